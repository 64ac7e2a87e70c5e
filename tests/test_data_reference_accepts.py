"""Data the reference implementation reads, which fastp2p refused (QA: odd-width A|B images,
grayscale among colour), and `fastp2p test --preprocess none` on images of different sizes.

Expected items come from the reference's AlignedDataset written out here (``reference_item``:
``convert('RGB')``, the split at ``int(w / 2)`` that leaves B a pixel wider at an odd width,
get_params on A's size, get_transform), on random images, and are compared exactly.
"""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.cli import main
from fastp2p.data import DataError, create_dataset
from fastp2p.data.pack import pack_phase
from helpers.data_helpers import data_args, write_image
from helpers.train_helpers import (tiny_test_argv, tiny_test_results, train_tiny_run,
                                   write_aligned_dataset)

BICUBIC = Image.Resampling.BICUBIC


# ---- the reference, written out ---------------------------------------------------------

def _reference_params(opt, size, rng) -> tuple[int, int, bool]:
    """base_dataset.get_params: x, then y, then the flip."""
    w, h = size
    new_w, new_h = w, h
    if opt.preprocess == "resize_and_crop":
        new_w = new_h = opt.load_size
    elif opt.preprocess == "scale_width_and_crop":
        new_w, new_h = opt.load_size, opt.load_size * h // w
    x = rng.randint(0, max(0, new_w - opt.crop_size))
    y = rng.randint(0, max(0, new_h - opt.crop_size))
    return x, y, rng.random() > 0.5


def _reference_transform(img, opt, params, grayscale: bool) -> torch.Tensor:
    """base_dataset.get_transform with params, then ToTensor and Normalize."""
    x, y, flip = params
    if grayscale:
        img = img.convert("L")
    if "resize" in opt.preprocess:
        img = img.resize((opt.load_size, opt.load_size), BICUBIC)
    elif "scale_width" in opt.preprocess:
        ow, oh = img.size
        if not (ow == opt.load_size and oh >= opt.crop_size):
            height = int(max(opt.load_size * oh / ow, opt.crop_size))
            img = img.resize((opt.load_size, height), BICUBIC)
    if "crop" in opt.preprocess:
        ow, oh = img.size
        if ow > opt.crop_size or oh > opt.crop_size:
            img = img.crop((x, y, x + opt.crop_size, y + opt.crop_size))
    if opt.preprocess == "none":
        ow, oh = img.size
        w, h = int(round(ow / 4) * 4), int(round(oh / 4) * 4)
        if (w, h) != (ow, oh):
            img = img.resize((w, h), BICUBIC)
    if not opt.no_flip and flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.array(img, dtype=np.uint8)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
    return tensor.sub(0.5).div(0.5)


def reference_item(path, opt, rng) -> dict:
    """AlignedDataset.__getitem__, as the model then reads it (real_A, real_B)."""
    AB = Image.open(path).convert("RGB")
    w, h = AB.size
    w2 = int(w / 2)
    A = AB.crop((0, 0, w2, h))
    B = AB.crop((w2, 0, w, h))
    params = _reference_params(opt, A.size, rng)
    btoa = opt.direction == "BtoA"
    input_nc = opt.output_nc if btoa else opt.input_nc
    output_nc = opt.input_nc if btoa else opt.output_nc
    item = {"A": _reference_transform(A, opt, params, input_nc == 1),
            "B": _reference_transform(B, opt, params, output_nc == 1)}
    return {"A": item["B"], "B": item["A"]} if btoa else item


# ---- datasets ---------------------------------------------------------------------------

def _noise(rng, width: int, height: int, gray: bool = False) -> np.ndarray:
    shape = (height, width) if gray else (height, width, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _assert_items_match_the_reference(root, *options: str, seeds=range(4)):
    args = data_args(root, *options)
    dataset = create_dataset(args, "train")
    assert len(dataset) == len(list((root / "train").iterdir()))
    for index, path in enumerate(dataset.paths):
        for seed in seeds:
            ours = dataset.load(index, random.Random(seed))
            theirs = reference_item(path, args, random.Random(seed))
            assert torch.equal(ours["A"], theirs["A"]), (path, seed)
            assert torch.equal(ours["B"], theirs["B"]), (path, seed)


# widths whose A and B halves the mode makes alike (33: A 16, B 17 pixels)
MODES = [("resize_and_crop", "20", "16", (33, 33, 35)), ("crop", "20", "12", (33, 33, 35)),
         ("scale_width_and_crop", "20", "16", (33, 33, 35)),
         ("scale_width", "20", "16", (65, 65, 67)), ("none", "20", "16", (33, 33, 35))]


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
@pytest.mark.parametrize("mode, load, crop, widths", MODES)
def test_odd_width_images_give_the_references_items(tmp_path, mode, load, crop, widths,
                                                     direction):
    """scale_width_and_crop draws y from A's scaled height, so B's crop may pass its bottom
    (black rows, as in the reference)."""
    rng = np.random.default_rng(7)
    for index, width in enumerate(widths):
        write_image(tmp_path / "train" / f"{index}.png", _noise(rng, width, 20))
    _assert_items_match_the_reference(tmp_path, "--preprocess", mode, "--load_size", load,
                                      "--crop_size", crop, "--direction", direction)


@pytest.mark.parametrize("channels", [(), ("--input_nc", "1"), ("--output_nc", "1")])
def test_grayscale_among_colour_gives_the_references_items(tmp_path, channels):
    rng = np.random.default_rng(8)
    for index, gray in enumerate((False, True, False)):
        write_image(tmp_path / "train" / f"{index}.png", _noise(rng, 32, 16, gray))
    assert Image.open(tmp_path / "train" / "1.png").mode == "L"
    _assert_items_match_the_reference(tmp_path, "--load_size", "20", "--crop_size", "16",
                                      *channels)


def test_two_folders_take_grayscale_among_colour(tmp_path):
    rng = np.random.default_rng(9)
    for index, gray in enumerate((False, True)):
        for side in "AB":
            write_image(tmp_path / "train" / side / f"{index}.png", _noise(rng, 12, 12, gray))
    dataset = create_dataset(data_args(tmp_path, "--dataset_mode", "two_folders",
                                       "--load_size", "12", "--crop_size", "12"), "train")
    item = dataset.load(1, random.Random(0))
    assert item["A"].shape == (3, 12, 12) and torch.equal(item["A"][0], item["A"][2])


def test_odd_width_halves_of_other_sizes_are_refused_naming_the_image(tmp_path):
    """37 wide: A 18 -> 16, B 19 -> 20 with --preprocess none; A's translation is compared
    with B pixel by pixel, so that image cannot be used."""
    rng = np.random.default_rng(10)
    write_image(tmp_path / "train" / "0.png", _noise(rng, 33, 16))
    bad = write_image(tmp_path / "train" / "1.png", _noise(rng, 37, 16))
    with pytest.raises(DataError) as caught:
        create_dataset(data_args(tmp_path, "--preprocess", "none"), "train")
    assert str(caught.value).startswith(
        f"{bad}: width 37 is odd: its A half 18x16 becomes 16x16 with --preprocess none but "
        "its B half 19x16 20x16")


def test_a_pack_of_odd_width_and_grayscale_images_gives_the_folders_items(tmp_path):
    rng = np.random.default_rng(11)
    for index, (width, gray) in enumerate(((33, False), (33, True), (32, False))):
        write_image(tmp_path / "data" / "train" / f"{index}.png", _noise(rng, width, 16, gray))
    pack_phase(tmp_path / "data", tmp_path / "packed", "train", load_size=16, progress=False)
    for direction in ("AtoB", "BtoA"):
        options = ("--load_size", "16", "--crop_size", "12", "--direction", direction)
        folder = create_dataset(data_args(tmp_path / "data", *options), "train")
        packed = create_dataset(data_args(tmp_path / "packed", *options), "train")
        for index in range(3):
            ours, theirs = (d.load(index, random.Random(index)) for d in (packed, folder))
            assert torch.equal(ours["A"], theirs["A"]) and torch.equal(ours["B"], theirs["B"])


# ---- fastp2p train and test ---------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The 1-epoch run "tiny" (unet_32), trained on odd-width and grayscale images among the
    colour ones: training takes them."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2, phases=("train",))
    rng = np.random.default_rng(12)
    write_image(data / "train" / "odd.png", _noise(rng, 65, 32))
    write_image(data / "train" / "gray.png", _noise(rng, 64, 32, gray=True))
    return train_tiny_run(data, tmp_path_factory.mktemp("trained"))


def _saved_sizes(results) -> dict:
    images = tiny_test_results(results) / "images"
    return {path.name: Image.open(path).size for path in sorted(images.iterdir())}


def test_test_takes_odd_width_and_grayscale_among_colour(tmp_path, trained):
    rng = np.random.default_rng(13)
    for name, width, gray in (("a", 64, False), ("odd", 65, False), ("gray", 64, True)):
        write_image(tmp_path / "data" / "test" / f"{name}.png", _noise(rng, width, 32, gray))
    assert main(tiny_test_argv(tmp_path / "data", trained, tmp_path / "res")) == 0
    assert set(_saved_sizes(tmp_path / "res").values()) == {(32, 32)}


def test_test_with_preprocess_none_translates_each_image_at_its_own_size(tmp_path, trained):
    rng = np.random.default_rng(14)
    for name, side in (("v0", 32), ("v1", 64), ("v2", 32)):
        write_image(tmp_path / "data" / "test" / f"{name}.png", _noise(rng, 2 * side, side))
    results = tmp_path / "res"
    assert main(tiny_test_argv(tmp_path / "data", trained, results, "--preprocess", "none")) == 0
    sizes = _saved_sizes(results)
    assert sizes["v1_fake_B.png"] == sizes["v1_real_B.png"] == (64, 64)
    assert sizes["v0_fake_B.png"] == sizes["v2_fake_B.png"] == (32, 32)


def test_test_with_preprocess_none_names_an_image_the_unet_cannot_take(tmp_path, trained,
                                                                        capsys):
    rng = np.random.default_rng(15)
    write_image(tmp_path / "data" / "test" / "v0.png", _noise(rng, 64, 32))
    bad = write_image(tmp_path / "data" / "test" / "v1.png", _noise(rng, 96, 48))
    argv = tiny_test_argv(tmp_path / "data", trained, tmp_path / "res", "--preprocess", "none")
    assert main(argv) == 1
    assert (f"{bad}: 48x48 becomes 48x48 with --preprocess none, but --netG unet_32 takes "
            "only sides that are multiples of 32") in capsys.readouterr().err


def test_training_with_preprocess_none_still_needs_one_size(tmp_path):
    """A batch stacks items of one size: training keeps the refusal."""
    rng = np.random.default_rng(16)
    write_image(tmp_path / "train" / "v0.png", _noise(rng, 64, 32))
    write_image(tmp_path / "train" / "v1.png", _noise(rng, 64, 32))
    bad = write_image(tmp_path / "train" / "v2.png", _noise(rng, 128, 64))
    with pytest.raises(DataError, match=f"^{bad}: 64x64 becomes 64x64 with --preprocess none, "
                                        "but most images become 32x32"):
        create_dataset(data_args(tmp_path, "--preprocess", "none"), "train")
