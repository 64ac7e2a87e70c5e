"""A pack of more shards than the process may hold open (QA at 50k pairs, stop 44): PackedDataset
kept a descriptor per shard it had read, so a pack of ~1,000 shards under `ulimit -n 1024` failed
with EMFILE a few steps into training. It now holds at most ``open_shards_capacity()`` of them,
the least recently read dropped first, and a dropped shard reopens without its CRC32 again."""
import os
import random
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import fastp2p.data.packed as packed_module
from fastp2p.cli import main
from fastp2p.data import DataError
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import make_aligned, tiny_pack_args

SHARDS = 24     # one pair each (make_aligned tells up to 26 apart)


@pytest.fixture(scope="module")
def phase(tmp_path_factory):
    root = tmp_path_factory.mktemp("many_shards")
    make_aligned(root / "data", count=SHARDS)
    assert main(tiny_pack_args(root / "data", root / "out", "--pairs-per-shard", "1")) == 0
    return root / "out" / "train"


def _open(phase):
    return PackedDataset(phase, Preprocess(load_size=16, crop_size=16), swap=False)


def _open_shard_files(phase) -> int:
    """Descriptors this process holds on the pack's shards."""
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:     # the listing's own descriptor, closed by now
            continue
        if target.startswith(str(phase)) and target.endswith(".u8"):
            names.add(fd)
    return len(names)


def test_the_capacity_follows_the_soft_limit_on_open_files(monkeypatch):
    for soft, capacity in [(1024, 128), (256, 32), (64, 8), (8, 2), (16384, 2048), (1 << 20, 4096)]:
        monkeypatch.setattr(packed_module.resource, "getrlimit", lambda _, soft=soft: (soft, soft))
        assert packed_module.open_shards_capacity() == capacity
    infinite = packed_module.resource.RLIM_INFINITY
    monkeypatch.setattr(packed_module.resource, "getrlimit", lambda _: (infinite, infinite))
    assert packed_module.open_shards_capacity() == packed_module.MAX_OPEN_SHARDS


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_at_most_capacity_shards_stay_open_and_each_is_checked_once(phase, monkeypatch):
    monkeypatch.setattr(packed_module, "open_shards_capacity", lambda: 3)
    checked = []
    real_crc32 = PackedDataset._crc32
    monkeypatch.setattr(PackedDataset, "_crc32",
                        staticmethod(lambda fd, size: checked.append(fd) or real_crc32(fd, size)))
    dataset = _open(phase)
    first = dataset.read_batch(range(SHARDS))
    assert _open_shard_files(phase) == 3
    order = list(range(SHARDS))
    random.Random(0).shuffle(order)
    again = dataset.read_batch(order)
    for index in order[:10]:
        assert np.array_equal(dataset.read_raw(index), first[index].numpy())
    assert torch.equal(again, first[order])
    assert _open_shard_files(phase) == 3
    # every pair differs (blue of A is 10 * i): a wrong shard reopened would show
    assert len({bytes(pair.numpy()) for pair in first}) == SHARDS
    assert len(checked) == SHARDS    # reopened shards were not read through again


def test_a_dropped_shard_changed_since_is_found_rewritten(phase, tmp_path, monkeypatch):
    """A shard checked, dropped from the open ones, then changed in place is the pack rewritten,
    as it is for a shard still open."""
    copy = tmp_path / "train"
    shutil.copytree(phase, copy)
    monkeypatch.setattr(packed_module, "open_shards_capacity", lambda: 2)
    dataset = _open(copy)
    dataset.read_batch(range(4))        # shards 0 and 1 dropped, 2 and 3 open
    with open(copy / "shard-00000.u8", "r+b") as shard:
        shard.write(b"\xff" * 7)
    with pytest.raises(DataError, match="the pack was rewritten while it was read "
                                        r"\(shard-00000.u8 no longer matches"):
        dataset.read_raw(0)


def test_reader_threads_share_a_small_set_of_open_shards(phase, monkeypatch):
    """Threads that drop and reopen shards under each other's reads read every pair right."""
    monkeypatch.setattr(packed_module, "open_shards_capacity", lambda: 2)
    dataset = _open(phase)
    expected = _open(phase).read_batch(range(SHARDS))
    failures = []

    def read(seed):
        rng = random.Random(seed)
        try:
            for _ in range(30):
                order = rng.sample(range(SHARDS), 8)
                if not torch.equal(dataset.read_batch(order), expected[order]):
                    failures.append(f"thread {seed}: wrong pairs for {order}")
        except Exception as error:      # noqa: BLE001 - reported by the main thread
            failures.append(f"thread {seed}: {error!r}")

    threads = [threading.Thread(target=read, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # a reader stuck past its join would report nothing: not a pass
    assert not [thread for thread in threads if thread.is_alive()], "a reader thread hung"
    assert failures == []


CHILD = """
import os, resource, sys
from pathlib import Path
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
phase = Path(sys.argv[1])
used = len(os.listdir("/proc/self/fd"))
# room for what is open now, the reading lock and a few more, not for every shard
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 16, hard))
dataset = PackedDataset(phase, Preprocess(load_size=16, crop_size=16), swap=False)
pairs = [dataset.read_raw(index) for index in range(len(dataset))]
print(dataset.read_batch(range(len(dataset))).sum().item(), sum(int(p.sum()) for p in pairs))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_pack_of_more_shards_than_the_limit_on_open_files_reads(phase, tmp_path):
    """End to end, with a real `ulimit -n` below the number of shards."""
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", CHILD, str(phase)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = _open(phase).read_batch(range(SHARDS)).sum().item()
    assert result.stdout.split() == [str(expected)] * 2


def test_a_gray_pack_s_two_files_a_shard_share_the_open_ones(tmp_path, monkeypatch):
    """A --gray pack opens a colour and a grayscale file per shard: both count, each reads its
    own pairs."""
    make_aligned(tmp_path / "data", count=6)
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out", "--pairs-per-shard", "1",
                               "--gray")) == 0
    phase = tmp_path / "out" / "train"
    expected = {(index, prefix): _open(phase).read_raw(index, prefix)
                for index in range(6) for prefix in ("", "gray_")}
    monkeypatch.setattr(packed_module, "open_shards_capacity", lambda: 3)
    dataset = _open(phase)
    for _ in range(2):
        for index in range(6):
            for prefix in ("gray_", ""):
                assert np.array_equal(dataset.read_raw(index, prefix), expected[index, prefix])
    if os.path.isdir("/proc/self/fd"):
        assert _open_shard_files(phase) == 3
