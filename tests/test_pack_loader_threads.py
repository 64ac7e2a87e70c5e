"""PackedDeviceLoader's reader threads: same batches with any number of them, a bounded number
of batches read ahead while the training thread pauses, errors raised where batches are taken."""
import argparse
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.data import add_data_arguments, create_dataloader, create_dataset
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed_loader import MAX_READERS, PackedDeviceLoader, default_readers


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    rng = np.random.default_rng(9)
    (root / "data" / "train").mkdir(parents=True)
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (12, 24, 3), dtype=np.uint8)).save(
            root / "data" / "train" / f"{i:02d}.png")
    pack_phase(root / "data", root / "packed", "train", load_size=12, pairs_per_shard=4,
               progress=False)
    args = add_data_arguments(argparse.ArgumentParser()).parse_args(
        ["--dataroot", str(root / "packed"), "--load_size", "12", "--crop_size", "8"])
    return create_dataset(args, "train")


class CountingReads:
    """A dataset whose read_batch calls are counted (and can be made to fail)."""

    def __init__(self, dataset, fail_at=None):
        self.dataset, self.reads, self.fail_at = dataset, 0, fail_at

    def read_batch(self, indices, out=None):
        self.reads += 1
        if self.reads == self.fail_at:
            raise OSError("disk on fire")
        return self.dataset.read_batch(indices, out=out)

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)


@pytest.mark.parametrize("readers,buffers", [(1, 2), (3, 2), (3, None), (4, 7)])
def test_any_number_of_readers_gives_the_item_loaders_batches(dataset, readers, buffers):
    want = create_dataloader(dataset, 2, shuffle=True, num_workers=0, seed=5)
    got = PackedDeviceLoader(dataset, 2, shuffle=True, seed=5, device="cpu", readers=readers,
                             buffers=buffers)
    for epoch in (0, 3):
        want.set_epoch(epoch)
        got.set_epoch(epoch)
        pairs = list(zip(got, want, strict=True))
        assert len(pairs) == 6
        for g, w in pairs:
            assert torch.equal(g["A"], w["A"]) and torch.equal(g["B"], w["B"])
            assert g["A_paths"] == w["A_paths"]


def test_reads_ahead_exactly_buffers_batches_while_the_consumer_pauses(dataset):
    counting = CountingReads(dataset)
    loader = PackedDeviceLoader(counting, 1, shuffle=False, seed=0, device="cpu", readers=2,
                                buffers=4)
    batches = iter(loader)
    next(batches)                   # the consumer holds batch 0 and pauses (a checkpoint save)
    deadline = time.monotonic() + 30
    while counting.reads < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert counting.reads == 5      # batch 0 and the 4 batches after it, and no more
    assert len(list(batches)) == len(dataset) - 1


def test_a_readers_error_is_raised_in_the_training_thread(dataset):
    loader = PackedDeviceLoader(CountingReads(dataset, fail_at=3), 2, shuffle=False, seed=0,
                                device="cpu", readers=2)
    taken = []
    with pytest.raises(OSError, match="disk on fire"):
        for batch in loader:
            taken.append(batch)
    assert len(taken) == 2


def test_reader_threads_follow_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert default_readers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_readers() == MAX_READERS
    loader = PackedDeviceLoader(_Packed(), 1, shuffle=False, seed=0, device="cpu")
    assert loader.readers == MAX_READERS and loader.buffers == MAX_READERS + 2
    with pytest.raises(ValueError, match="readers must be >= 1"):
        PackedDeviceLoader(_Packed(), 1, shuffle=False, seed=0, device="cpu", readers=0)


class _Packed:
    def read_batch(self, indices, out=None):
        raise AssertionError("not read")

    def __len__(self):
        return 3
