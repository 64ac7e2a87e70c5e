"""PackedDataset's positioned reads against what can go wrong under them (review r42): integer
types that wrap, a shard swapped for a FIFO, an OS error from a read, a shard made unreadable."""
import os
import stat
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

PAIRS = 4   # 16x32x3 each


def _pack(tmp_path, per_shard: int):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=PAIRS)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", str(per_shard))) == 0
    return out / "train"


def _open(phase):
    return PackedDataset(phase, Preprocess(load_size=16, crop_size=16), swap=False)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_an_int32_index_gives_the_offset_without_wrapping(tmp_path, monkeypatch, kind):
    """Row 3 of a shard with 1 GiB rows starts at 3 GiB: in int32 arithmetic (the index's type
    kept through _locate) that wrapped to -1 GiB, a wrong row or EINVAL in shards past 2 GiB."""
    dataset = _open(_pack(tmp_path, PAIRS))     # one shard, rows 0-3
    dataset.read_raw(0)                         # opened and checked with its real rows
    opened = dataset._files.get(("", 0))
    row_bytes = opened.row_bytes = 1 << 30      # as if each pair were 1 GiB
    offsets = []

    def recording_preadv(fd, buffers, offset):  # reads nothing, says it read a whole row
        offsets.append(offset)
        return row_bytes

    monkeypatch.setattr(packed_module, "_PREADV", recording_preadv)
    index = np.int32(3) if kind == "numpy" else torch.tensor(3, dtype=torch.int32)
    dataset.read_raw(index)
    dataset.read_batch(torch.tensor([3], dtype=torch.int32) if kind == "torch"
                       else np.array([3], dtype=np.int32))
    assert [(type(offset), offset) for offset in offsets] == [(int, 3 << 30)] * 2


def test_a_fifo_swapped_in_after_the_size_check_is_refused_not_waited_on(tmp_path, monkeypatch):
    """A FIFO at a shard's name once its size was checked: the open blocked until something
    wrote into it (the reader hung). Opened without blocking, it is refused by its fstat."""
    phase = _pack(tmp_path, 2)
    dataset = _open(phase)
    shard = phase / "shard-00001.u8"
    real_check = packed_module.check_shard_size

    def check_then_swap(path, *args):
        real_check(path, *args)
        if path == shard and not stat.S_ISFIFO(os.stat(shard).st_mode):
            fifo = tmp_path / "fifo"
            os.mkfifo(fifo)
            os.replace(fifo, shard)

    monkeypatch.setattr(packed_module, "check_shard_size", check_then_swap)
    outcome = []

    def read():
        try:
            dataset.read_raw(2)
        except DataError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    hung = reader.is_alive()
    if hung:    # let the blocked open through: a writer opens, and closes at once
        os.close(os.open(shard, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert not hung, outcome
    assert outcome == [f"{shard}: shard is not a regular file (a FIFO); move it out of the pack "
                       f"folder, then re-run `{outcome[0].split('re-run `', 1)[1]}"], outcome


@pytest.mark.parametrize("call", ["preadv", "fstat"])
@pytest.mark.parametrize("read", ["read_raw", "read_batch"])
def test_an_os_error_under_a_read_is_one_line_naming_the_shard(tmp_path, monkeypatch, call,
                                                                read):
    """EIO from the disk: a DataError naming the shard and the OS error, not the OSError's
    traceback (what each errno says: test_packed_os_errors)."""
    import errno
    phase = _pack(tmp_path, 2)
    dataset = _open(phase)
    dataset.read_batch(range(PAIRS))    # both shards open and checked
    code = errno.EIO

    def failing(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(packed_module, "_PREADV" if call == "preadv" else "_open_identity",
                        failing)
    with pytest.raises(DataError) as error:
        dataset.read_raw(3) if read == "read_raw" else dataset.read_batch([0, 3])
    message = str(error.value)
    shard = phase / ("shard-00001.u8" if read == "read_raw" else "shard-00000.u8")
    assert message.startswith(f"{shard}: reading this shard failed ({os.strerror(code)}); "), \
        message
    assert "\n" not in message
