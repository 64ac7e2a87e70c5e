"""A PackedDataset that refuses its pack lets go of the pack's reading lock as it raises.

It took the lock before reading the index, and kept it until the half-built object was
collected: the repack its own message suggests, run at once in the same process, was refused
("this pack is read now by a training") while the error (its traceback holds the object) was
kept, or until a garbage collection freed it."""
import gc

import pytest

from fastp2p.data.errors import DataError
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import read_index
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import synthetic_pack


@pytest.fixture
def no_gc():
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("config,repack", [
    # packed at 20: repack at that size, `--overwrite`
    (Preprocess(load_size=32, crop_size=32), {"load_size": 32, "overwrite": True}),
    # packed without --gray: repack with it
    (Preprocess(load_size=20, crop_size=16, a_channels=1, b_channels=1),
     {"load_size": 20, "gray": True}),
], ids=["larger --load_size", "grayscale without --gray"])
def test_the_suggested_repack_runs_right_after_the_refusal(tmp_path, no_gc, config, repack):
    data, out = synthetic_pack(tmp_path, 4)
    with pytest.raises(DataError, match="repack") as caught:
        PackedDataset(out / "train", config, swap=False)
    # the error is still held (as a caller that reports it holds it), nothing collected
    assert caught.value.__traceback__ is not None
    pack_phase(data, out, "train", workers=1, progress=False, pairs_per_shard=2, **repack)
    index = read_index(out / "train")
    assert index["load_size"] == repack["load_size"]
    assert bool(index.get("gray")) == repack.get("gray", False)
