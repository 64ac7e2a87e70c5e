"""PackedDeviceLoader: a reader thread and device-side augmentation give exactly the batches of
create_dataloader on the same packed dataset (order per seed/epoch/rank, crops and flips)."""
import argparse
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.data import add_data_arguments, create_dataloader, create_dataset
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed_loader import PackedDeviceLoader


@pytest.fixture(scope="module")
def packed_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(4)
    (root / "data" / "train").mkdir(parents=True)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (12 + i, 26, 3), dtype=np.uint8)).save(
            root / "data" / "train" / f"{i}.png")
    pack_phase(root / "data", root / "packed", "train", load_size=12, pairs_per_shard=3,
               progress=False)
    return root / "packed"


def _dataset(root, direction):
    args = add_data_arguments(argparse.ArgumentParser()).parse_args(
        ["--dataroot", str(root), "--load_size", "12", "--crop_size", "9",
         "--direction", direction])
    return create_dataset(args, "train")


def _collect(loader, epochs):
    out = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        out += list(loader)
    return out


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_batches_equal_create_dataloader(packed_root, direction):
    dataset = _dataset(packed_root, direction)
    options = dict(shuffle=True, seed=11, rank=1, world_size=2)
    want = _collect(create_dataloader(dataset, 3, num_workers=0, **options), (0, 1))
    got = _collect(PackedDeviceLoader(dataset, 3, device="cpu", buffers=2, **options), (0, 1))
    assert len(got) == len(want) == 4          # 4 pairs per rank: a full and a partial batch
    for g, w in zip(got, want):
        assert torch.equal(g["A"], w["A"]) and torch.equal(g["B"], w["B"])
        assert g["A_paths"] == w["A_paths"] and g["B_paths"] == w["B_paths"]
    assert not torch.equal(got[0]["A"], got[2]["A"][:len(got[0]["A"])])   # epochs differ


def test_start_batch_skips_the_first_batches_of_that_epoch_only(packed_root):
    dataset = _dataset(packed_root, "AtoB")
    loader = PackedDeviceLoader(dataset, 2, shuffle=True, seed=3, device="cpu")
    whole = _collect(loader, (1,))
    loader.set_epoch(1, start_batch=1)
    rest = list(loader)
    assert len(loader) == len(whole) == 4 and len(rest) == 3
    for g, w in zip(rest, whole[1:]):
        assert torch.equal(g["A"], w["A"]) and g["A_paths"] == w["A_paths"]
    assert len(_collect(loader, (1,))) == 4


def test_stopping_early_ends_the_reader_thread(packed_root):
    loader = PackedDeviceLoader(_dataset(packed_root, "AtoB"), 1, shuffle=False, seed=0,
                                device="cpu", buffers=2)
    before = threading.active_count()
    for _ in loader:
        break
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="PackedDataset"):
        PackedDeviceLoader(list(range(3)), 1, shuffle=False, seed=0, device="cpu")


@pytest.mark.cuda
def test_cuda_batches_equal_create_dataloader(packed_root):
    dataset = _dataset(packed_root, "AtoB")
    want = _collect(create_dataloader(dataset, 4, shuffle=True, num_workers=0, seed=3), (2,))
    got = _collect(PackedDeviceLoader(dataset, 4, shuffle=True, seed=3, device="cuda",
                                      dtype=torch.bfloat16), (2,))
    for g, w in zip(got, want, strict=True):
        assert g["A"].is_cuda and g["A"].dtype == torch.bfloat16
        assert torch.equal(g["A"].cpu(), w["A"].to(torch.bfloat16))
        assert torch.equal(g["B"].cpu(), w["B"].to(torch.bfloat16))
