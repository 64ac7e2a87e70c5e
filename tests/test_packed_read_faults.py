"""PackedDataset's positioned reads against what can go wrong under them (review r42): integer
types that wrap, a shard swapped for a FIFO, an OS error from a read, a shard made unreadable."""
import os
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
    opened = dataset._files[("", 0)]
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
