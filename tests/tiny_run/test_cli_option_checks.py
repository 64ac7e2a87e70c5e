"""Option values `fastp2p train` and `fastp2p test` refuse up front, exit 2 (or 1 for what only
the images tell), with one line naming the option, before anything is written: --init_gain,
--seed, --lambda_L1, --lr and --beta1 out of range or nan; a --load_size or image sizes the U-Net
cannot take with --preprocess scale_width or none; a --suffix or --phase holding a path; a run
with no epoch to train; --max_dataset_size below 1. What the reference accepts still trains."""
import argparse

import numpy as np
import pytest
from PIL import Image

from fastp2p.cli import main
from helpers.train_helpers import one_line, tiny_test_argv, train_argv


SHARED_BAD = [("--init_gain", "nan"), ("--init_gain", "-1"), ("--init_gain", "inf"),
              ("--seed", "99999999999999999999"), ("--seed", str(2 ** 63)), ("--seed", "-1"),
              # torch's generators keep the low 32 bits: it trained --seed 1's networks
              ("--seed", str(2 ** 32 + 1))]


TRAIN_BAD = [("--lambda_L1", "nan"), ("--lambda_L1", "-inf"), ("--lambda_L1", "-3"),
             ("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1e-4"),
             ("--beta1", "nan"), ("--beta1", "1"), ("--beta1", "-0.1")]


@pytest.mark.parametrize("command,option,value",
                         [("train", *bad) for bad in SHARED_BAD + TRAIN_BAD]
                         + [("test", *bad) for bad in SHARED_BAD])
def test_bad_gain_seed_and_lambda_exit_2_naming_the_option(data, tmp_path, capsys, command,
                                                           option, value):
    given = f"{option}={value}"   # "-inf" alone would read as an option
    argv = (train_argv(data, tmp_path / "ckpt", "--init_type", "xavier", given)
            if command == "train" else
            tiny_test_argv(data, tmp_path / "ckpt", tmp_path / "res", given))
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}:" in line and value in line, line
    assert not (tmp_path / "ckpt").exists()


def test_what_the_reference_accepts_still_trains(data, tmp_path, capsys):
    """0 for --init_gain, --lambda_L1, --lr and --beta1 (the reference takes any float; Adam
    takes these), the largest seed, and --preprocess scale_width at a --load_size the U-Net
    takes."""
    assert main(train_argv(data, tmp_path / "ckpt", "--init_type", "xavier", "--init_gain", "0",
                           "--lambda_L1", "0", "--lr", "0", "--beta1", "0",
                           "--seed", str(2 ** 32 - 1), "--preprocess",
                           "scale_width", "--n_epochs_decay", "0", "--no_html")) == 0


def _dataset(root, width, height):
    """One train and one test pair whose halves are width x height."""
    for phase in ("train", "test"):
        (root / phase).mkdir(parents=True)
        pixels = np.random.default_rng(1).integers(0, 256, (height, 2 * width, 3), np.uint8)
        Image.fromarray(pixels).save(root / phase / "000.png")
    return root


def test_scale_width_at_a_load_size_the_unet_cannot_take_exits_2(data, tmp_path, capsys):
    argv = train_argv(data, tmp_path / "ckpt", "--preprocess", "scale_width", "--load_size",
                      "40")
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert all(word in line for word in ("--preprocess scale_width", "--load_size 40",
                                         "--netG unet_32", "multiples of 32")), line
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_pack_refuses_other_preprocess_before_the_unet_checks_the_size(data, tmp_path,
                                                                        trained, capsys,
                                                                        command):
    """--preprocess scale_width at a --load_size the U-Net cannot take, on a pack: the pack's
    refusal of the mode comes first (on 21eda25 the U-Net's size check did, and its advice, a
    --load_size that is a multiple of 32, ran into the pack's refusal next)."""
    packed = tmp_path / "packed"
    assert main(["pack", str(data), str(packed), "--load_size", "32", "--phase", "train",
                 "test", "--no-progress"]) == 0
    capsys.readouterr()
    size = ["--preprocess", "scale_width", "--load_size", "40"]
    argv = (train_argv(packed, tmp_path / "ckpt", *size) if command == "train" else
            tiny_test_argv(packed, trained, tmp_path / "res", *size))
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "only --preprocess resize_and_crop" in line and "not scale_width" in line, line
    assert "--netG" not in line, line
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "scale_width"])
def test_a_damaged_pack_index_is_a_data_error_whatever_the_preprocess(data, tmp_path, capsys,
                                                                     preprocess):
    """A pack whose index cannot be read: exit 1 naming it, as reading the dataset reports it,
    whatever --preprocess says (the early refusal of other modes leaves the index to it)."""
    packed = tmp_path / "packed"
    assert main(["pack", str(data), str(packed), "--load_size", "32", "--no-progress"]) == 0
    (packed / "train" / "index.json").write_text("{broken")
    capsys.readouterr()
    assert main(train_argv(packed, tmp_path / "ckpt", "--preprocess", preprocess)) == 1
    line = one_line(capsys.readouterr().err)
    assert "index.json" in line, line


def test_an_empty_dataroot_is_the_embedded_dataset_to_the_pack_check(tmp_path, monkeypatch):
    """--dataroot "" means the embedded dataset, as everywhere else: a pack in the current
    folder's train/ is not asked about --preprocess."""
    from fastp2p.data.packed_index import refuse_preprocess_of_options
    assert main(["pack", "--synthetic", "2", "--load_size", "32", "--no-progress",
                 str(tmp_path / "src"), str(tmp_path)]) == 0
    monkeypatch.chdir(tmp_path)
    refuse_preprocess_of_options(argparse.Namespace(dataroot="", phase="train",
                                                    preprocess="scale_width"))
    with pytest.raises(ValueError, match="only --preprocess resize_and_crop"):
        refuse_preprocess_of_options(argparse.Namespace(dataroot=".", phase="train",
                                                        preprocess="scale_width"))


@pytest.mark.parametrize("command", ["train", "test"])
@pytest.mark.parametrize("preprocess,width,height,load_size", [
    ("scale_width", 32, 40, "32"),   # 32 wide, but 40 tall
    ("none", 40, 40, "40")])         # kept at 40x40
def test_image_sizes_the_unet_cannot_take_name_the_options(tmp_path, trained, capsys, command,
                                                           preprocess, width, height,
                                                           load_size):
    data = _dataset(tmp_path / "data", width, height)
    size = ["--preprocess", preprocess, "--load_size", load_size, "--crop_size", "32"]
    argv = (train_argv(data, tmp_path / "ckpt", *size) if command == "train" else
            tiny_test_argv(data, trained, tmp_path / "res", *size))
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert f"--preprocess {preprocess}" in line and "--netG unet_32" in line, line
    assert f"{width}x{height}" in line and "000.png" in line, line
    if command == "train":
        assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_suffix_with_a_path_is_refused(data, tmp_path, capsys, command):
    checkpoints = tmp_path / "deep" / "ckpt"
    argv = train_argv(data, checkpoints, "--suffix", "/../../escaped")
    if command == "test":
        argv = ["test", "--dataroot", str(data), "--checkpoints_dir", str(checkpoints),
                "--name", "tiny", "--suffix", "/../../escaped", "--results_dir",
                str(tmp_path / "deep" / "results")]
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "--suffix" in line and "path separators" in line
    assert not (tmp_path / "deep").exists() and not (tmp_path / "escaped").exists()


def test_train_phase_with_a_path_is_refused_by_the_parser(data, tmp_path, capsys):
    assert main(train_argv(data, tmp_path / "ckpt", "--phase", "../train")) == 2
    assert "--phase" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("extra", [["--n_epochs", "0", "--n_epochs_decay", "0"],
                                   ["--epoch_count", "3"]], ids=["zero_epochs", "past_the_end"])
def test_a_run_with_no_epoch_to_train_exits_2(data, tmp_path, capsys, extra):
    assert main(train_argv(data, tmp_path / "ckpt", *extra)) == 2
    line = one_line(capsys.readouterr().err)
    assert all(option in line for option in ("--epoch_count", "--n_epochs", "--n_epochs_decay"))
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "lots"])
def test_max_dataset_size_below_one_is_an_option_error(data, tmp_path, capsys, value):
    assert main(train_argv(data, tmp_path / "ckpt", "--max_dataset_size", value)) == 2
    line = one_line(capsys.readouterr().err.splitlines()[-1])
    assert "--max_dataset_size" in line and repr(value) in line


def test_max_dataset_size_takes_counts_and_inf():
    parser = argparse.ArgumentParser()
    from fastp2p.data import add_data_arguments
    add_data_arguments(parser)
    assert parser.parse_args(["--max_dataset_size", "3"]).max_dataset_size == 3
    assert parser.parse_args(["--max_dataset_size", "inf"]).max_dataset_size == float("inf")
