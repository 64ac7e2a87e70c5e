"""One-line errors of `fastp2p train` and `fastp2p test` that say what is wrong: a --dataroot
that is a file is named as a file (not "not found"), a damaged checkpoint names the file and
how to get a good one, a missing one is said before the sizes a generator would check, and a
--crop_size above --load_size is refused as the options that do not fit together are."""
import pytest

from fastp2p.cli import main
from helpers.train_helpers import (one_line, tiny_test_argv, train_argv, train_tiny_run,
                                   write_aligned_dataset)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=4)


def test_a_dataroot_that_is_a_file_is_named_as_a_file(tmp_path, capsys):
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    assert main(train_argv(a_file, tmp_path / "ckpt")) == 1
    line = one_line(capsys.readouterr().err)
    assert str(a_file) in line and "is a file" in line and "not found" not in line


def test_test_with_a_damaged_checkpoint_says_which_file_and_how_to_get_a_good_one(
        data, tmp_path, capsys):
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")) == 0
    weights = tmp_path / "ckpt" / "tiny" / "latest_net_G.pth"
    weights.write_bytes(weights.read_bytes()[:-10])
    capsys.readouterr()
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                 "--crop_size", "32", "--num_threads", "0",
                 "--results_dir", str(tmp_path / "results")]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(weights) in line and "another saved --epoch" in line
    assert "start again without --continue_train" not in line


def test_test_of_a_run_with_no_checkpoint_says_so_before_the_sizes_of_a_default_netg(
        data, tmp_path, capsys):
    """A --name typo has no train_opt.txt either: the default unet_256 did not take --crop_size
    32, and that was said instead (exit 2), with advice that led only to this error."""
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                 "--name", "nosuch", "--load_size", "32", "--crop_size", "32",
                 "--results_dir", str(tmp_path / "results")]) == 1
    line = one_line(capsys.readouterr().err)
    assert "no checkpoint" in line and "train first (fastp2p train --name nosuch)" in line, line


def test_a_crop_larger_than_the_load_size_exits_2_in_train_and_test(data, tmp_path, capsys):
    """It exited 1, as a dataset's error, where --crop_size 48 for unet_32 exited 2."""
    checkpoints = train_tiny_run(data, tmp_path / "ckpt")
    capsys.readouterr()
    crop = ("--load_size", "32", "--crop_size", "64")   # 64: a size unet_32 takes
    assert main(train_argv(data, tmp_path / "other", *crop)) == 2
    assert one_line(capsys.readouterr().err).endswith(
        "--crop_size 64 is larger than --load_size 32; pass a crop_size <= load_size")
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results", *crop)) == 2
    assert "--crop_size 64 is larger than --load_size 32" in one_line(capsys.readouterr().err)
    # --preprocess crop does not resize with --load_size: the line says why it matters
    assert main(train_argv(data, tmp_path / "other", "--preprocess", "crop", *crop)) == 2
    assert "--preprocess crop does not resize with" in one_line(capsys.readouterr().err)
