"""A --gray pack (grayscale shards beside the colour ones) gives the folders' items pixel for
pixel with --input_nc 1 / --output_nc 1: grayscale is taken before the resize, as the folders and
the reference do. A pack without --gray refuses those options in one line; grayscale shards are
checked, resumed and dropped like colour ones."""
import argparse
import random

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.cli import main
from fastp2p.data import add_data_arguments, create_dataset
from fastp2p.data.errors import DataError
from fastp2p.data.pack import load_pair, pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import read_index, verify_pack


LOAD, CROP = 20, 16


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    """train/ with 5 random-colour A|B images of different sizes, and the same pairs as
    A/ and B/ files (two_folders), so grayscale-then-resize differs from resize-then-grayscale."""
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(3)
    for layout in ("aligned", "two"):
        for side in (("",) if layout == "aligned" else ("A", "B")):
            (root / layout / "train" / side).mkdir(parents=True)
    for i in range(5):
        pixels = rng.integers(0, 256, (24 + i, 2 * (22 + 3 * i), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "aligned" / "train" / f"{i}.png")
        half = pixels.shape[1] // 2
        Image.fromarray(pixels[:, :half]).save(root / "two" / "train" / "A" / f"{i}.png")
        Image.fromarray(pixels[:, half:]).save(root / "two" / "train" / "B" / f"{i}.png")
    return root


def _data_args(root, **options):
    parser = add_data_arguments(argparse.ArgumentParser())
    argv = ["--dataroot", str(root), "--load_size", str(LOAD), "--crop_size", str(CROP)]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return parser.parse_args(argv)


@pytest.mark.parametrize("layout", ["aligned", "two"])
def test_a_gray_pack_gives_the_folders_items_pixel_for_pixel(colour_root, tmp_path, layout):
    out = tmp_path / "packed"
    mode = "aligned" if layout == "aligned" else "two_folders"
    pack_phase(colour_root / layout, out, "train", load_size=LOAD, pairs_per_shard=2,
               dataset_mode=mode, gray=True, progress=False)
    verify_pack(out / "train")
    for channels in ({"input_nc": 1}, {"output_nc": 1}, {"input_nc": 1, "output_nc": 1}, {}):
        for direction in ("AtoB", "BtoA"):
            options = dict(channels, direction=direction, dataset_mode=mode)
            folder = create_dataset(_data_args(colour_root / layout, **options), "train")
            packed = create_dataset(_data_args(out, **options), "train")
            assert isinstance(packed, PackedDataset) and len(packed) == len(folder) == 5
            for index in range(5):
                for seed in range(3):
                    want = folder.load(index, random.Random(seed))
                    got = packed.load(index, random.Random(seed))
                    for name, count in (("A", channels.get("input_nc", 3)),
                                        ("B", channels.get("output_nc", 3))):
                        assert got[name].shape == (count, CROP, CROP)
                        assert torch.equal(got[name], want[name]), (options, index, seed, name)
                    assert (got["A_paths"], got["B_paths"]) == (want["A_paths"], want["B_paths"])


def test_the_images_tell_gray_then_resize_from_resize_then_gray(colour_root):
    """Else the test above could not tell the reference's order from the old one."""
    gray = np.empty((LOAD, 2 * LOAD), np.uint8)
    colour = load_pair(colour_root / "aligned", "train/0.png", "train/0.png", True, LOAD,
                       gray_out=gray)
    assert not np.array_equal(np.asarray(Image.fromarray(colour).convert("L")), gray)


def test_a_pack_without_gray_refuses_gray_options_in_one_line(colour_root, tmp_path):
    out = tmp_path / "packed"
    pack_phase(colour_root / "aligned", out, "train", load_size=LOAD, progress=False)
    for option in ({"input_nc": 1}, {"output_nc": 1}):
        with pytest.raises(DataError) as caught:
            create_dataset(_data_args(out, **option), "train")
        message = str(caught.value)
        assert "\n" not in message and str(out / "train") in message
        assert f"--load_size {LOAD} --dataset_mode aligned" in message and "--gray`" in message


def test_gray_shards_are_checked_resumed_and_dropped_like_colour_ones(colour_root, tmp_path,
                                                                     capsys):
    out = tmp_path / "packed"
    assert main(["pack", str(colour_root / "aligned"), str(out), "--load_size", str(LOAD),
                 "--pairs-per-shard", "2", "--gray", "--no-progress"]) == 0
    good = {path.name: path.read_bytes() for path in (out / "train").glob("gray-*.u8")}
    assert sorted(good) == ["gray-00000.u8", "gray-00001.u8", "gray-00002.u8"]
    gray_shard = out / "train" / "gray-00001.u8"
    damaged = bytearray(gray_shard.read_bytes())
    damaged[3] ^= 1
    gray_shard.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="gray-00001.u8: checksum"):
        verify_pack(out / "train")
    packed = create_dataset(_data_args(out, input_nc=1), "train")
    with pytest.raises(DataError, match="gray-00001.u8: shard checksum .*--gray`"):
        for index in range(len(packed)):
            packed.load(index, random.Random(index))
    packed.close()      # as the training ends: pack refuses to rewrite a pack being read
    assert main(["pack", str(colour_root / "aligned"), str(out), "--load_size", str(LOAD),
                 "--pairs-per-shard", "2", "--gray", "--no-progress"]) == 0
    assert {path.name: path.read_bytes() for path in (out / "train").glob("gray-*.u8")} == good
    # packed again without --gray: the grayscale shards go with the option
    assert main(["pack", str(colour_root / "aligned"), str(out), "--load_size", str(LOAD),
                 "--pairs-per-shard", "2", "--no-progress"]) == 0
    assert not list((out / "train").glob("gray-*.u8"))
    assert read_index(out / "train")["gray"] is False
