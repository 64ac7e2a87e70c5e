"""Two packed-dataset checks the other pack tests leave open:

- a --gray pack's grayscale shard is CRC-checked when it is first read, as the colour shards
  are: one damaged byte in it is refused with the usual one-line checksum error (the colour
  shard beside it being intact);
- PackedDeviceLoader's A_paths / B_paths follow --direction BtoA on a two_folders pack: A's
  path is the B folder's file, as the dataset's own items give it.
"""
import argparse
import random

import numpy as np
import pytest
from PIL import Image

from fastp2p.data import add_data_arguments, create_dataset
from fastp2p.data.errors import DataError
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed_index import read_index
from fastp2p.data.packed_loader import PackedDeviceLoader


def _args(dataroot, *options):
    parser = add_data_arguments(argparse.ArgumentParser())
    return parser.parse_args(["--dataroot", str(dataroot), *options])


def _flip_one_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("channels", [["--input_nc", "1"], ["--output_nc", "1"]],
                         ids=["gray-A", "gray-B"])
def test_a_damaged_gray_shard_is_refused(tmp_path, channels):
    rng = np.random.default_rng(3)
    (tmp_path / "src" / "train").mkdir(parents=True)
    for i in range(3):
        pixels = rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "src" / "train" / f"{i}.png")
    pack_phase(tmp_path / "src", tmp_path / "out", "train", load_size=20, pairs_per_shard=4,
               dataset_mode="aligned", gray=True, progress=False)
    shard = read_index(tmp_path / "out" / "train")["shards"][0]
    options = ["--load_size", "20", "--crop_size", "16", *channels]
    intact = create_dataset(_args(tmp_path / "out", *options), "train")
    intact.load(0, random.Random(0))   # the undamaged pack reads
    _flip_one_byte(tmp_path / "out" / "train" / shard["gray_file"])
    dataset = create_dataset(_args(tmp_path / "out", *options), "train")
    with pytest.raises(DataError, match="checksum") as raised:
        dataset.load(0, random.Random(0))
    message = str(raised.value)
    assert shard["gray_file"] in message and "\n" not in message


def test_packed_loader_paths_follow_btoa_on_a_two_folders_pack(tmp_path):
    rng = np.random.default_rng(4)
    for i in range(3):
        for side in "AB":
            folder = tmp_path / "data" / "train" / side
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (12, 13, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=12, pairs_per_shard=3,
               dataset_mode="two_folders", progress=False)
    for direction, a_folder in (("AtoB", "A"), ("BtoA", "B")):
        dataset = create_dataset(_args(tmp_path / "packed", "--load_size", "12", "--crop_size",
                                       "9", "--direction", direction, "--dataset_mode",
                                       "two_folders"), "train")
        (batch,) = list(PackedDeviceLoader(dataset, 3, shuffle=False, seed=0, device="cpu"))
        items = [dataset.load(i, random.Random(0)) for i in range(3)]
        assert batch["A_paths"] == [item["A_paths"] for item in items]
        assert batch["B_paths"] == [item["B_paths"] for item in items]
        b_folder = "B" if a_folder == "A" else "A"
        assert [p.split("/")[-2:] for p in batch["A_paths"]] == [[a_folder, f"{i}.png"]
                                                                 for i in range(3)]
        assert [p.split("/")[-2:] for p in batch["B_paths"]] == [[b_folder, f"{i}.png"]
                                                                 for i in range(3)]
