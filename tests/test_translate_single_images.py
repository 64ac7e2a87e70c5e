"""`fastp2p test --dataset_mode single` and `--model test`: images without a target, each
translated by the generator as the reference's SingleDataset + TestModel do (every image under
--dataroot itself, sorted; Image.open(path).convert('RGB'), the test transform, G), saved as
NAME_real.png / NAME_fake.png and listed on index.html, with no L1. Before, `single` was an
invalid choice and --model test was refused."""
import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.cli import main
from fastp2p.train.networks import generator_from_options
from helpers.train_helpers import (applied_options, one_line, parsed_options, tiny_test_argv,
                                   tiny_test_results)


def _write_random_images(folder, sizes: dict, seed=0):
    """Random RGB images (never constant) at ``sizes`` ({relative path: (width, height)})."""
    rng = np.random.default_rng(seed)
    for name, (width, height) in sizes.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)


def _save_generator(checkpoints, *options, file_name="latest_net_G.pth"):
    """A generator of ``options`` (tiny_test_argv's and these) with random weights and, for a
    batch norm, random running statistics (so that --eval changes the output), saved as a
    reference file (no manifest) of the run "tiny"; returns it."""
    args = parsed_options("test", *tiny_test_argv("unused", checkpoints, "unused")[1:],
                          *options)
    torch.manual_seed(1)
    netG = generator_from_options(args, torch.device("cpu"))
    with torch.no_grad():
        # weights of about unit gain (the init's 0.02 makes every output nearly 0, a gray image)
        for parameter in netG.parameters():
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 100
            parameter.normal_(0, fan_in ** -0.5)
        for name, buffer in netG.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    (checkpoints / "tiny").mkdir(parents=True, exist_ok=True)
    torch.save(netG.state_dict(), checkpoints / "tiny" / file_name)
    return netG


def _reference_single_item(path, size: int, grayscale: bool) -> torch.Tensor:
    """The reference's SingleDataset item A for --preprocess resize_and_crop with load_size ==
    crop_size == ``size`` and no flip (test.py's): convert('RGB'), Grayscale(1) for input_nc 1,
    Resize(BICUBIC), RandomCrop of the whole image, ToTensor, Normalize(0.5, 0.5); 1xCxHxW."""
    image = Image.open(path).convert("RGB")
    if grayscale:
        image = image.convert("L")
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1) / 255
    return ((tensor - 0.5) / 0.5)[None]


def _as_saved(image: torch.Tensor) -> np.ndarray:
    """The reference's tensor2im of a CxHxW image: HxWx3 uint8."""
    array = image.numpy()
    array = np.tile(array, (3, 1, 1)) if array.shape[0] == 1 else array
    return ((np.transpose(array, (1, 2, 0)) + 1) / 2 * 255).astype(np.uint8)


def _read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


SIZES = {"b.png": (48, 40), "sub/a.jpg": (32, 32), "c_ab.png": (64, 32)}   # c: an A|B image


@pytest.mark.parametrize("mode, input_nc", [("--eval", 3), ("", 3), ("--eval", 1)])
def test_outputs_are_the_generator_of_each_whole_image(tmp_path, capsys, mode, input_nc):
    """Train mode (no --eval: batch statistics) and eval mode (running statistics), RGB and
    grayscale (--input_nc 1) input; no dropout, so the output is determined."""
    model = ("--norm", "batch", "--no_dropout", "--input_nc", str(input_nc))
    netG = _save_generator(tmp_path / "ck", *model)
    _write_random_images(tmp_path / "images", SIZES)
    # on the CPU, where the expected images are computed (a GPU's TF32 rounds otherwise)
    argv = tiny_test_argv(tmp_path / "images", tmp_path / "ck", tmp_path / "res", *model,
                          "--dataset_mode", "single", "--device", "cpu",
                          *([mode] if mode else []))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "translated 3 image(s)" in out and "L1" not in out
    netG.train(mode != "--eval")
    images = tiny_test_results(tmp_path / "res") / "images"
    for name in SIZES:
        real = _reference_single_item(tmp_path / "images" / name, 32, input_nc == 1)
        with torch.no_grad():
            fake = netG(real)
        stem = name.split("/")[-1].split(".")[0]
        for label, expected in (("real", real), ("fake", fake)):
            saved = _read(images / f"{stem}_{label}.png")
            # the one difference allowed: a float rounding that moves a value across a level
            assert np.abs(saved - _as_saved(expected[0])).max() <= 1, (name, label)
        assert fake.std() > 0.1   # a picture, not a gray field


def test_model_test_reads_dataroot_itself_and_lists_real_and_fake(tmp_path, capsys):
    """The reference's documented command: --model test implies single; --direction does not
    apply; no DATAROOT/test split is needed; files and page hold real and fake only."""
    _save_generator(tmp_path / "ck", "--norm", "batch")
    _write_random_images(tmp_path / "testB", SIZES)
    argv = tiny_test_argv(tmp_path / "testB", tmp_path / "ck", tmp_path / "res", "--model",
                          "test", "--direction", "BtoA", "--norm", "batch")
    assert main(argv) == 0
    results = tiny_test_results(tmp_path / "res")
    names = sorted(path.name for path in (results / "images").iterdir())
    assert names == sorted(f"{stem}_{label}.png" for stem in ("a", "b", "c_ab")
                           for label in ("real", "fake"))
    page = (results / "index.html").read_text(encoding="utf-8")
    for name in names:
        assert f"images/{name}" in page
    assert "real_B" not in page and "fake_B" not in page
    assert "L1" not in capsys.readouterr().out


def test_model_suffix_names_the_generator_file(tmp_path, capsys):
    _save_generator(tmp_path / "ck", file_name="latest_net_G_A.pth")
    _write_random_images(tmp_path / "images", {"x.png": (32, 32)})
    argv = tiny_test_argv(tmp_path / "images", tmp_path / "ck", tmp_path / "res", "--model",
                          "test", "--model_suffix", "_A")
    assert main(argv) == 0
    assert "latest_net_G_A.pth" in capsys.readouterr().out
    assert main(argv[:-1] + ["_B"]) == 1
    assert "latest_net_G_B.pth" in one_line(capsys.readouterr().err)


def test_each_image_keeps_its_size_where_preprocess_keeps_sizes(tmp_path, capsys):
    _save_generator(tmp_path / "ck")
    _write_random_images(tmp_path / "images", {"wide.png": (64, 32), "tall.png": (32, 96)})
    argv = tiny_test_argv(tmp_path / "images", tmp_path / "ck", tmp_path / "res",
                          "--dataset_mode", "single", "--preprocess", "none")
    assert main(argv) == 0
    images = tiny_test_results(tmp_path / "res") / "images"
    assert Image.open(images / "wide_fake.png").size == (64, 32)
    assert Image.open(images / "tall_fake.png").size == (32, 96)
    _write_random_images(tmp_path / "images", {"odd.png": (40, 40)})
    capsys.readouterr()
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "odd.png" in error and "multiples of 32" in error


@pytest.mark.parametrize("options, code, words", [
    (("--model", "test", "--dataset_mode", "aligned"), 2, "--dataset_mode single"),
    (("--model_suffix", "_A"), 2, "--model test"),
    (("--dataset_mode", "single"), 1, "no images"),
])
def test_refusals_are_one_line(tmp_path, capsys, options, code, words):
    _save_generator(tmp_path / "ck")
    (tmp_path / "empty").mkdir()
    argv = tiny_test_argv(tmp_path / "empty", tmp_path / "ck", tmp_path / "res", *options)
    assert main(argv) == code
    assert words in one_line(capsys.readouterr().err)


def test_single_needs_a_dataroot(tmp_path, capsys):
    argv = tiny_test_argv("x", tmp_path / "ck", tmp_path / "res", "--model", "test")
    argv = argv[:1] + argv[3:]    # no --dataroot
    assert main(argv) == 2
    assert "give --dataroot" in one_line(capsys.readouterr().err)


def test_the_reference_commands_choose_the_dataset_mode():
    """The reference's documented --model test command, and the default of --model pix2pix."""
    documented = ("--dataroot", "./datasets/facades/testB/", "--name", "facades_pix2pix",
                  "--model", "test", "--netG", "unet_256", "--direction", "BtoA",
                  "--dataset_mode", "single", "--norm", "batch")
    assert applied_options("test", *documented)[0].dataset_mode == "single"
    without_mode = documented[:-4] + documented[-2:]
    assert applied_options("test", *without_mode)[0].dataset_mode == "single"
    assert applied_options("test", "--dataroot", "d")[0].dataset_mode == "aligned"
    assert applied_options("train", "--dataroot", "d")[0].dataset_mode == "aligned"
    with pytest.raises(SystemExit):   # training needs pairs
        parsed_options("train", "--dataset_mode", "single")


def test_a_missing_split_beside_images_points_to_single(tmp_path, capsys):
    """The user's route: a folder of images given as --dataroot, without --dataset_mode."""
    _save_generator(tmp_path / "ck")
    _write_random_images(tmp_path / "testB", {"x.png": (32, 32)})
    assert main(tiny_test_argv(tmp_path / "testB", tmp_path / "ck", tmp_path / "res")) == 1
    assert "pass --dataset_mode single" in one_line(capsys.readouterr().err)
