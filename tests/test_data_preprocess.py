"""The folder datasets reproduce the reference implementation's AlignedDataset item by item.

Expected outputs are built here with Pillow from the reference's recipe (get_params draws x, then
y, then ``random() > 0.5`` for the flip; get_transform: grayscale, bicubic resize, crop, the
__make_power_2(base=4) rounding, flip, ToTensor, Normalize) and compared exactly.
"""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data_helpers import (A_BLUE, B_BLUE, STEP, data_args, expected_tensor, gradient_half,
                          make_aligned, to_pixels, write_ab, write_image)
from fastp2p.data import DataError, create_dataset

BICUBIC = Image.Resampling.BICUBIC


def reference_params(seed: int, new_w: int, new_h: int, crop: int):
    rng = random.Random(seed)
    x = rng.randint(0, max(0, new_w - crop))
    y = rng.randint(0, max(0, new_h - crop))
    return x, y, rng.random() > 0.5


def half_image(width, height, blue):
    return Image.fromarray(gradient_half(width, height, blue))


def read_offsets(tensor: torch.Tensor):
    """(x, y, flipped) of a crop of a gradient half, read from its red and green values."""
    pixels = to_pixels(tensor)
    red = pixels[0, :, 0]
    flipped = bool(red[0] > red[1])
    return int(red.min()) // STEP, int(pixels[0, 0, 1]) // STEP, flipped


def test_aligned_splits_at_half_width_and_normalizes(tmp_path):
    path = write_ab(tmp_path / "train" / "p.png", 20, 12)
    dataset = create_dataset(data_args(tmp_path, "--preprocess", "none", "--no_flip"), "train")
    item = dataset[0]
    assert set(item) == {"A", "B", "A_paths", "B_paths"}
    assert item["A_paths"] == item["B_paths"] == str(path)
    for key, blue in (("A", A_BLUE), ("B", B_BLUE)):
        assert item[key].dtype == torch.float32 and item[key].shape == (3, 12, 20)
        assert torch.equal(item[key], expected_tensor(half_image(20, 12, blue)))
    # the extremes of the normalization: 0 -> -1 and 255 -> 1, exactly
    assert item["A"][2].eq(-1).all() and item["B"][2].eq(1).all()
    assert item["A"][0, 0, 0] == -1


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no_flip"])
def test_crop_offsets_and_flip_follow_the_reference_draws_and_match_for_a_and_b(tmp_path, flip):
    make_aligned(tmp_path, count=1, width=20, height=20)
    options = ["--preprocess", "crop", "--load_size", "20", "--crop_size", "12"]
    dataset = create_dataset(data_args(tmp_path, *options, *([] if flip else ["--no_flip"])),
                             "train")
    seen_x, seen_y, flips = set(), set(), 0
    for seed in range(200):
        item = dataset.load(0, random.Random(seed))
        x, y, flipped = read_offsets(item["A"])
        assert (x, y, flipped) == read_offsets(item["B"])
        # same crop and flip for A and B: red and green agree everywhere, blue tells them apart
        assert torch.equal(item["A"][:2], item["B"][:2])
        assert item["A"][2].eq(-1).all() and item["B"][2].eq(1).all()
        ref_x, ref_y, ref_flip = reference_params(seed, 20, 20, 12)
        assert (x, y, flipped) == (ref_x, ref_y, ref_flip and flip)
        seen_x.add(x)
        seen_y.add(y)
        flips += flipped
    assert seen_x == seen_y == set(range(9))     # offsets cover [0, load - crop]
    if flip:
        assert 60 < flips < 140                  # p = 0.5 over 200 draws
    else:
        assert flips == 0


def test_resize_and_crop_is_bicubic_to_load_size_then_the_same_crop(tmp_path):
    write_ab(tmp_path / "train" / "p.png", 24, 16)     # non-square: resized to a square
    args = data_args(tmp_path, "--load_size", "20", "--crop_size", "16")
    assert args.preprocess == "resize_and_crop"         # the reference's default
    dataset = create_dataset(args, "train")
    for seed in range(6):
        item = dataset.load(0, random.Random(seed))
        x, y, flip = reference_params(seed, 20, 20, 16)
        for key, blue in (("A", A_BLUE), ("B", B_BLUE)):
            img = half_image(24, 16, blue).resize((20, 20), BICUBIC).crop((x, y, x + 16, y + 16))
            if flip:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            assert torch.equal(item[key], expected_tensor(img)), (seed, key)


@pytest.mark.parametrize("height, scaled_height", [(10, 8), (6, 8), (16, 12)],
                         ids=["h10", "h6-raised-to-crop", "h16"])
def test_scale_width_keeps_aspect_with_height_at_least_crop(tmp_path, height, scaled_height):
    write_ab(tmp_path / "train" / "p.png", 20, height)
    options = ["--preprocess", "scale_width", "--load_size", "16", "--crop_size", "8",
               "--no_flip"]
    item = create_dataset(data_args(tmp_path, *options), "train")[0]
    # the reference: h = int(max(load * h / w, crop)), w = load
    expected = half_image(20, height, A_BLUE).resize((16, scaled_height), BICUBIC)
    assert torch.equal(item["A"], expected_tensor(expected))


def test_scale_width_leaves_an_image_of_the_target_width_alone(tmp_path):
    write_ab(tmp_path / "train" / "p.png", 16, 10)
    options = ["--preprocess", "scale_width", "--load_size", "16", "--crop_size", "8",
               "--no_flip"]
    item = create_dataset(data_args(tmp_path, *options), "train")[0]
    assert torch.equal(item["B"], expected_tensor(half_image(16, 10, B_BLUE)))


def test_scale_width_and_crop_draws_y_from_the_scaled_height(tmp_path):
    write_ab(tmp_path / "train" / "p.png", 20, 12)
    options = ["--preprocess", "scale_width_and_crop", "--load_size", "16", "--crop_size", "8"]
    dataset = create_dataset(data_args(tmp_path, *options), "train")
    for seed in range(8):
        item = dataset.load(0, random.Random(seed))
        # get_params: new_w = 16, new_h = 16 * 12 // 20 = 9; the image is resized to 16 x 9
        x, y, flip = reference_params(seed, 16, 9, 8)
        img = half_image(20, 12, B_BLUE).resize((16, 9), BICUBIC).crop((x, y, x + 8, y + 8))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        assert item["B"].shape == (3, 8, 8)
        assert torch.equal(item["B"], expected_tensor(img)), seed


@pytest.mark.parametrize("width, height, rounded", [(22, 18, (24, 16)), (20, 16, (20, 16)),
                                                    (26, 14, (24, 16))],
                         ids=["22x18", "20x16-kept", "26x14"])
def test_preprocess_none_rounds_sides_to_multiples_of_4(tmp_path, width, height, rounded):
    write_ab(tmp_path / "train" / "p.png", width, height)
    item = create_dataset(data_args(tmp_path, "--preprocess", "none", "--no_flip"), "train")[0]
    img = half_image(width, height, A_BLUE)
    if rounded != (width, height):
        # __make_power_2(base=4): Python's round (half to even: 22/4 = 5.5 -> 6, 18/4 = 4.5 -> 4)
        img = img.resize(rounded, BICUBIC)
    assert item["A"].shape == (3, rounded[1], rounded[0])
    assert torch.equal(item["A"], expected_tensor(img))


def test_crop_mode_leaves_an_image_of_crop_size_uncropped(tmp_path):
    write_ab(tmp_path / "train" / "p.png", 12, 12)
    options = ["--preprocess", "crop", "--load_size", "16", "--crop_size", "12", "--no_flip"]
    item = create_dataset(data_args(tmp_path, *options), "train")[0]
    assert torch.equal(item["A"], expected_tensor(half_image(12, 12, A_BLUE)))


def test_direction_btoa_swaps_images_paths_and_channel_options(tmp_path):
    write_ab(tmp_path / "train" / "p.png", 12, 12)
    common = ["--preprocess", "none", "--no_flip"]
    forward = create_dataset(data_args(tmp_path, *common), "train")[0]
    backward = create_dataset(data_args(tmp_path, *common, "--direction", "BtoA"), "train")[0]
    assert torch.equal(backward["A"], forward["B"]) and torch.equal(backward["B"], forward["A"])
    # --input_nc is the model input's channels: with BtoA it applies to the file's B half
    gray = create_dataset(data_args(tmp_path, *common, "--direction", "BtoA", "--input_nc", "1"),
                          "train")[0]
    assert gray["A"].shape == (1, 12, 12) and gray["B"].shape == (3, 12, 12)
    assert torch.equal(gray["A"], expected_tensor(half_image(12, 12, B_BLUE).convert("L")))
    assert torch.equal(gray["B"], forward["A"])


def test_input_and_output_nc_1_give_grayscale(tmp_path):
    write_ab(tmp_path / "train" / "p.png", 12, 12)
    options = ["--preprocess", "none", "--no_flip", "--input_nc", "1", "--output_nc", "1"]
    item = create_dataset(data_args(tmp_path, *options), "train")[0]
    for key, blue in (("A", A_BLUE), ("B", B_BLUE)):
        assert item[key].shape == (1, 12, 12)
        assert torch.equal(item[key], expected_tensor(half_image(12, 12, blue).convert("L")))


def test_two_folders_pair_by_name_across_extensions(tmp_path):
    for i in range(4):
        write_image(tmp_path / "train" / "A" / f"img{i}.png", gradient_half(16, 16, 20 * i))
        # lossless BMP for B: the stem pairs it, not the extension
        write_image(tmp_path / "train" / "B" / f"img{i}.bmp", gradient_half(16, 16, 20 * i + 5))
    options = ["--dataset_mode", "two_folders", "--preprocess", "crop", "--load_size", "16",
               "--crop_size", "10"]
    dataset = create_dataset(data_args(tmp_path, *options), "train")
    assert len(dataset) == 4
    for i in range(4):
        item = dataset.load(i, random.Random(i))
        assert item["A_paths"].endswith(f"A/img{i}.png")
        assert item["B_paths"].endswith(f"B/img{i}.bmp")
        a_blue, b_blue = to_pixels(item["A"])[0, 0, 2], to_pixels(item["B"])[0, 0, 2]
        assert (a_blue, b_blue) == (20 * i, 20 * i + 5)
        assert read_offsets(item["A"]) == read_offsets(item["B"])
        assert torch.equal(item["A"][:2], item["B"][:2])
    swapped = create_dataset(data_args(tmp_path, *options, "--direction", "BtoA"), "train")
    item = swapped.load(2, random.Random(0))
    assert item["A_paths"].endswith("B/img2.bmp") and item["B_paths"].endswith("A/img2.png")


def test_max_dataset_size_keeps_the_first_pairs_in_sorted_order(tmp_path):
    paths = make_aligned(tmp_path, count=5, width=8, height=8)
    dataset = create_dataset(data_args(tmp_path, "--max_dataset_size", "3"), "train")
    assert [dataset[i]["A_paths"] for i in range(len(dataset))] == [str(p) for p in paths[:3]]
    assert len(create_dataset(data_args(tmp_path, "--max_dataset_size", "50"), "train")) == 5
    args = data_args(tmp_path)
    args.max_dataset_size = 0  # the parser refuses it; a caller from Python may not
    with pytest.raises(DataError, match="max_dataset_size"):
        create_dataset(args, "train")


def test_getitem_draws_from_pythons_global_random_like_the_reference(tmp_path):
    make_aligned(tmp_path, count=1)
    dataset = create_dataset(data_args(tmp_path, "--preprocess", "crop", "--load_size", "20",
                                       "--crop_size", "12"), "train")
    random.seed(7)
    item = dataset[0]
    assert torch.equal(item["A"], dataset.load(0, random.Random(7))["A"])


def test_a_crop_larger_than_load_size_is_refused(tmp_path):
    make_aligned(tmp_path, count=1)
    with pytest.raises(DataError, match="--crop_size 300 is larger than --load_size 286"):
        create_dataset(data_args(tmp_path, "--crop_size", "300"), "train")


def test_phase_selects_the_subfolder(tmp_path):
    make_aligned(tmp_path, count=2, phase="train")
    make_aligned(tmp_path, count=3, phase="test")
    options = ["--preprocess", "none"]
    assert len(create_dataset(data_args(tmp_path, *options), "test")) == 3
    assert np.all([p.startswith(str(tmp_path / "test")) for p in
                   create_dataset(data_args(tmp_path, *options), "test").paths])
