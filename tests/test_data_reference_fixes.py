"""Datasets the reference pix2pix trains on, as it reads them (a reviewer's repros, each failing
before its fix): sizes compared after a size-keeping --preprocess, the reference's sort order,
an unrelated index.json among images, 16-bit big-endian grayscale, gray among colour in a
--gray pack, --max_dataset_size with --skip-bad, and a flipped 1-pixel crop from a pack."""
import json
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.data import DataError, create_dataset
from fastp2p.data.folders import decode_rgb, list_images
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import is_packed
from fastp2p.data.transforms import PairParams, Preprocess, crop_flip_uint8, draw_params
from helpers.data_helpers import data_args, gradient_half, make_aligned, write_ab, write_image


def _shapes(dataset):
    return [(tuple(item["A"].shape), tuple(item["B"].shape))
            for item in (dataset.load(i, random.Random(i)) for i in range(len(dataset)))]


# ---- sizes after the transform, not before it --------------------------------------------

@pytest.mark.parametrize("skip_bad", [False, True])
def test_scale_width_batches_halves_of_one_aspect_ratio(tmp_path, skip_bad):
    """64x32 and 128x64 halves both become 64x32 at --load_size 64 (the reference's
    __scale_width): every pair is kept, none is called bad."""
    write_ab(tmp_path / "train" / "a.png", 64, 32)
    write_ab(tmp_path / "train" / "b.png", 128, 64)
    write_ab(tmp_path / "train" / "c.png", 64, 32)
    args = data_args(tmp_path, "--preprocess", "scale_width", "--load_size", "64",
                     "--crop_size", "32", *(["--skip-bad"] if skip_bad else []))
    dataset = create_dataset(args, "train")
    assert len(dataset) == 3
    assert _shapes(dataset) == [((3, 32, 64), (3, 32, 64))] * 3


def test_none_batches_halves_that_round_to_one_size(tmp_path):
    """62x30 and 64x32 halves both round to 64x32 (multiples of 4, as the reference)."""
    write_ab(tmp_path / "train" / "a.png", 62, 30)
    write_ab(tmp_path / "train" / "b.png", 64, 32)
    dataset = create_dataset(data_args(tmp_path, "--preprocess", "none", "--load_size", "64",
                                       "--crop_size", "32"), "train")
    assert _shapes(dataset) == [((3, 32, 64), (3, 32, 64))] * 2


def test_scale_width_still_refuses_another_output_size(tmp_path):
    write_ab(tmp_path / "train" / "a.png", 64, 32)
    write_ab(tmp_path / "train" / "b.png", 128, 64)
    tall = write_ab(tmp_path / "train" / "c.png", 64, 64)
    with pytest.raises(DataError) as caught:
        create_dataset(data_args(tmp_path, "--preprocess", "scale_width", "--load_size", "64",
                                 "--crop_size", "32"), "train")
    assert str(caught.value).startswith(f"{tall}: 64x64 becomes 64x64 with --preprocess "
                                        "scale_width, but most images become 64x32")


# ---- the reference's order -----------------------------------------------------------------

NESTED = ["a/1.png", "a b.png", "a-c/3.png", "a.b/2.png", "a0.png"]


def _reference_order(folder) -> list[str]:
    """The reference's make_dataset (os.walk, os.path.join) then AlignedDataset's sorted()."""
    images = [os.path.join(root, name) for root, _, names in sorted(os.walk(folder))
              for name in names if name.endswith(".png")]
    return [os.path.relpath(path, folder) for path in sorted(images)]


def test_nested_images_are_in_the_reference_order_in_folder_and_pack(tmp_path):
    for index, name in enumerate(NESTED):
        write_ab(tmp_path / "data" / "train" / name, 4, 4, a_blue=index)
    folder = tmp_path / "data" / "train"
    expected = ["a b.png", "a-c/3.png", "a.b/2.png", "a/1.png", "a0.png"]
    assert _reference_order(folder) == expected
    assert [str(p.relative_to(folder)) for p in list_images(folder)] == expected
    index = pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=4,
                       progress=False)
    assert [a for a, _ in index["sources"]] == [f"train/{name}" for name in expected]


# ---- an index.json that is not a pack's ------------------------------------------------------

def test_an_unrelated_index_json_among_images_is_ignored(tmp_path, capsys):
    make_aligned(tmp_path, count=2, width=8, height=8)
    (tmp_path / "train" / "index.json").write_text(json.dumps({"images": ["x.png"]}))
    assert not is_packed(tmp_path / "train")
    dataset = create_dataset(data_args(tmp_path, "--load_size", "8", "--crop_size", "8"),
                             "train")
    assert len(dataset) == 2 and not isinstance(dataset, PackedDataset)
    assert "index.json" in capsys.readouterr().err     # named as a file left out


def test_a_damaged_index_beside_shards_is_still_a_pack_with_a_clear_error(tmp_path):
    make_aligned(tmp_path / "data", count=2, width=8, height=8)
    pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=8, progress=False)
    (tmp_path / "packed" / "train" / "index.json").write_text('{"images": ["x.png"]}')
    assert is_packed(tmp_path / "packed" / "train")
    with pytest.raises(DataError, match="not a fastp2p pack index; re-run `fastp2p pack"):
        create_dataset(data_args(tmp_path / "packed", "--load_size", "8", "--crop_size", "8"),
                       "train")


@pytest.mark.parametrize("overwrite", [False, True])
def test_packing_where_another_programs_index_json_is_refused_and_leaves_it(tmp_path,
                                                                            overwrite):
    make_aligned(tmp_path / "data", count=2, width=8, height=8)
    theirs = tmp_path / "out" / "train" / "index.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('{"images": ["x.png"]}')
    with pytest.raises(DataError, match="index.json: not written by `fastp2p pack`.*another OUT"):
        pack_phase(tmp_path / "data", tmp_path / "out", "train", load_size=8, progress=False,
                   overwrite=overwrite)
    assert theirs.read_text() == '{"images": ["x.png"]}'
    assert sorted(p.name for p in theirs.parent.iterdir()) == ["index.json"]


def test_the_pack_command_refuses_another_programs_index_json_before_writing(tmp_path, capsys):
    from fastp2p.cli import main
    theirs = tmp_path / "out" / "train" / "index.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("[1, 2]")
    # --synthetic would write DATAROOT/train first: the refusal comes before it
    assert main(["pack", str(tmp_path / "data"), str(tmp_path / "out"), "--synthetic", "2",
                 "--overwrite", "--no-progress"]) == 1
    assert "not written by `fastp2p pack`" in capsys.readouterr().err
    assert theirs.read_text() == "[1, 2]" and not (tmp_path / "data").exists()


# ---- 16-bit grayscale of either byte order -------------------------------------------------

SIXTEEN_BIT = np.array([[0, 771, 65535, 1000], [300, 40000, 12345, 255]], np.uint16)


@pytest.mark.parametrize("mode, dtype", [("I;16B", ">u2"), ("I;16L", "<u2"), ("I;16", "<u2")])
def test_sixteen_bit_tiffs_of_either_byte_order_are_grayscale(tmp_path, mode, dtype):
    """A folder of such TIFFs beside 8-bit grayscale PNGs is one grayscale set (a big-endian
    one was called colour among grayscale), each decoded as round(value / 257)."""
    wide = np.concatenate([SIXTEEN_BIT, SIXTEEN_BIT[::-1]], axis=1)
    path = tmp_path / "train" / "wide.tif"
    path.parent.mkdir(parents=True)
    Image.frombytes(mode, wide.shape[::-1], wide.astype(dtype).tobytes()).save(path)
    write_image(tmp_path / "train" / "narrow.png", (wide // 257).astype(np.uint8))
    with Image.open(path) as img:
        decoded = np.asarray(decode_rgb(img))
    assert (decoded == ((wide.astype(np.int64) + 128) // 257)[:, :, None]).all()
    dataset = create_dataset(data_args(tmp_path, "--load_size", "4", "--crop_size", "4"),
                             "train")
    assert len(dataset) == 2


# ---- --gray packs of grayscale among colour images -----------------------------------------

def _gray_among_colour(root):
    make_aligned(root, count=3, width=8, height=8)
    gray = np.concatenate([gradient_half(8, 8, 0), gradient_half(8, 8, 90)], axis=1)[:, :, 1]
    write_image(root / "train" / "pair99.png", gray)


@pytest.mark.parametrize("channels", [("--input_nc", "1", "--output_nc", "1"),
                                      ("--input_nc", "3", "--output_nc", "1"), ()],
                         ids=["gray", "colour to gray", "colour"])
def test_gray_pack_of_gray_among_colour_gives_the_folders_items(tmp_path, channels):
    """For every channel count: the folders read grayscale among colour as RGB, as the
    reference does (stop 55); a --gray pack of them refused 3-channel use before."""
    _gray_among_colour(tmp_path / "data")
    index = pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=8,
                       gray=True, progress=False)
    assert index["count"] == 4
    options = (*channels, "--load_size", "8", "--crop_size", "6")
    folder = create_dataset(data_args(tmp_path / "data", *options), "train")
    packed = create_dataset(data_args(tmp_path / "packed", *options), "train")
    for i in range(4):
        expected, got = folder.load(i, random.Random(i)), packed.load(i, random.Random(i))
        assert got["A_paths"] == expected["A_paths"]
        assert torch.equal(got["A"], expected["A"]) and torch.equal(got["B"], expected["B"])


def test_gray_pack_of_colour_images_still_trains_three_channels(tmp_path):
    make_aligned(tmp_path / "data", count=2, width=8, height=8)
    pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=8, gray=True,
               progress=False)
    assert len(create_dataset(data_args(tmp_path / "packed", "--load_size", "8",
                                        "--crop_size", "8"), "train")) == 2


# ---- --max_dataset_size counts good pairs with --skip-bad ----------------------------------

@pytest.mark.parametrize("layout", ["aligned", "two_folders"])
def test_max_dataset_size_with_skip_bad_gives_the_packs_pairs(tmp_path, layout):
    data = tmp_path / "data" / "train"
    for index in range(4):
        if layout == "aligned":
            write_ab(data / f"{index}.png", 4, 4, a_blue=index)
        else:
            for side in "AB":
                write_image(data / side / f"{index}.png", gradient_half(4, 4, index))
    broken = data / ("1.png" if layout == "aligned" else "A/1.png")
    broken.write_bytes(b"not an image")
    options = ("--dataset_mode", layout, "--skip-bad", "--max_dataset_size", "2",
               "--load_size", "4", "--crop_size", "4")
    folder = create_dataset(data_args(tmp_path / "data", *options), "train")
    pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=4, skip_bad=True,
               dataset_mode=layout, progress=False)
    packed = create_dataset(data_args(tmp_path / "packed", *options), "train")
    names = [folder.load(i, random.Random(0))["A_paths"] for i in range(len(folder))]
    assert len(folder) == 2 and [os.path.basename(name) for name in names] == ["0.png", "2.png"]
    assert [packed.load(i, random.Random(0))["A_paths"] for i in range(len(packed))] == [
        str((tmp_path / "data").resolve() / os.path.relpath(name, tmp_path / "data"))
        for name in names]


# ---- a flipped 1-pixel crop ----------------------------------------------------------------

def test_flipped_one_pixel_crop_of_a_stored_pair(tmp_path):
    half = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    config = Preprocess(load_size=4, crop_size=1)
    got = crop_flip_uint8(half, config, PairParams(x=2, y=1, flip=True))
    assert torch.equal(got, torch.from_numpy(half[1:2, 2:3].copy()).permute(2, 0, 1)
                       .float().div(255).sub(0.5).div(0.5))
    make_aligned(tmp_path / "data", count=1, width=4, height=4)
    pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=4, progress=False)
    packed = PackedDataset(tmp_path / "packed" / "train", config, swap=False)
    flipping = next(seed for seed in range(100)
                    if draw_params(config, 4, 4, random.Random(seed)).flip)
    assert packed.load(0, random.Random(flipping))["A"].shape == (3, 1, 1)
