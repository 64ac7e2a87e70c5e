"""The refusal of crops larger than the packed pairs' halves (fastp2p.data.gpu_augment) names
the pack and the `fastp2p pack` command that repacks it large enough, as the pack's other
refusals do. It said only "repack with --load_size >= N", naming no folder."""
import random
import shlex

import pytest

from fastp2p.cli import main
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import read_index
from fastp2p.data.packed_loader import PackedDeviceLoader
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import synthetic_pack


def _past_its_checks(config: Preprocess, crop_size: int) -> Preprocess:
    """``config`` with a crop larger than its load size, which Preprocess refuses to make."""
    object.__setattr__(config, "crop_size", crop_size)
    return config


def test_the_packed_loader_names_the_pack_to_repack(tmp_path):
    data, out = synthetic_pack(tmp_path, 4)       # pairs of 20x20 halves
    dataset = PackedDataset(out / "train", Preprocess(load_size=20, crop_size=16), swap=False)
    # crops past the stored halves: only a dataset whose config was changed after it checked
    # the pack reaches the device crop with them (or a crafted pack)
    dataset.config = _past_its_checks(Preprocess(load_size=20, crop_size=16), crop_size=24)
    loader = PackedDeviceLoader(dataset, 2, shuffle=False, seed=0, device="cpu", readers=1)
    try:
        with pytest.raises(ValueError) as caught:
            next(iter(loader))
    finally:
        dataset.close()
    message = str(caught.value)
    assert message.startswith(f"{out / 'train'}: --crop_size 24 is larger than the stored "
                              "pairs' halves (20x20): pass a --crop_size <= 20, or repack at "
                              "that size: `"), message
    command = message.split("`")[1]
    assert shlex.split(command) == [
        "fastp2p", "pack", str(data.resolve()), str(out.resolve()), "--phase", "train",
        "--load_size", "24", "--dataset_mode", "aligned", "--overwrite"]  # its shard size:
    # pack's choice for the new size, not the one the old pack had
    assert main(shlex.split(command)[1:] + ["--no-progress"]) == 0    # run as printed, it works
    assert read_index(out / "train")["load_size"] == 24


def test_without_a_pack_the_message_stays_general():
    import torch

    from fastp2p.data.gpu_augment import augment_batch
    pairs = torch.zeros((2, 16, 32, 3), dtype=torch.uint8)
    config = _past_its_checks(Preprocess(load_size=16, crop_size=16), crop_size=20)
    with pytest.raises(ValueError, match=r"^--crop_size 20 is larger than the stored pairs' "
                                         r"halves \(16x16\): pass a --crop_size <= 16, or "
                                         r"repack the pairs with --load_size >= 20$"):
        augment_batch(pairs, config, [random.Random(0), random.Random(1)])
