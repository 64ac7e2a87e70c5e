"""Under torchrun a refusal was printed once per rank (--norm syncbatch on CPU, --tensorboard
not installed, a resume at sizes that do not fit its position), then by rank 0 alone, which left
a refusal that another node alone hit (a package it lacks, its GPUs or RAM) without a word. The
first process of each node (LOCAL_RANK 0) prints it, with ``rank N: `` off rank 0; the others
exit with the same code, silently."""
import os
import subprocess
import sys

import pytest

from fastp2p.cli import main
from fastp2p.train import train_command
from fastp2p.train.trainer import ResumeError
from helpers.train_helpers import one_line, train_argv, write_aligned_dataset

SYNCBATCH_ON_CPU = ("fastp2p train: error: --norm syncbatch needs CUDA devices across "
                    "processes (PyTorch's SyncBatchNorm has no CPU implementation); use --norm "
                    "batch or instance on CPU")


def _as_rank(monkeypatch, rank: str, local_rank: str, world_size: str = "4") -> None:
    """torchrun's variables for ``rank``; train reads them before joining the job."""
    monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)


# 2 nodes of 2 processes: ranks 0 and 1 on the first, 2 and 3 on the second
@pytest.mark.parametrize("rank, local_rank, said", [
    ("0", "0", SYNCBATCH_ON_CPU), ("1", "1", None), ("2", "0", f"rank 2: {SYNCBATCH_ON_CPU}"),
    ("3", "1", None)])
def test_a_refusal_is_said_once_per_node(tmp_path, monkeypatch, capsys, rank, local_rank, said):
    _as_rank(monkeypatch, rank, local_rank)
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    argv = train_argv(data, tmp_path / "ckpt", "--norm", "syncbatch",
                      "--device", "cpu")
    assert main(argv) == 2   # refused before the data or a process group is looked at
    err = capsys.readouterr().err
    assert (one_line(err) if said else err) == (said or "")


def _train_as_rank(options: list, folder, rank: str, local_rank: str,
                   world_size: str = "4") -> subprocess.CompletedProcess:
    """`fastp2p train OPTIONS` run in ``folder`` as a process torchrun started."""
    env = {**os.environ, "WORLD_SIZE": world_size, "RANK": rank, "LOCAL_RANK": local_rank}
    return subprocess.run([sys.executable, "-m", "fastp2p", "train", *options], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=300)


# (rank, local_rank, what begins each of the two lines; None: no line), as
# test_a_refusal_is_said_once_per_node
@pytest.mark.parametrize("rank, local_rank, prefix", [
    ("0", "0", ""), ("1", "1", None), ("2", "0", "rank 2: "), ("3", "1", None)])
def test_an_option_error_is_said_once_per_node(tmp_path, rank, local_rank, prefix):
    """The parser's option error (usage and error line) was printed by every process of the
    job, before any refusal of train's own, which each node's first process alone prints."""
    result = _train_as_rank(["--batch_size", "0"], tmp_path, rank, local_rank)
    assert result.returncode == 2, result.stderr
    if prefix is None:
        assert result.stderr == "", result.stderr
        return
    usage, error = result.stderr.splitlines()
    assert usage.startswith(f"{prefix}usage: fastp2p train "), result.stderr
    assert error == f"{prefix}fastp2p train: error: argument --batch_size: must be >= 1, got 0"


class _TrainerAtAnotherSize:
    def resume(self, state, loader):
        raise ResumeError("cannot resume epoch 1 at its image 3")


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_a_resume_refused_is_said_by_rank_0(monkeypatch, capsys, rank, said):
    _as_rank(monkeypatch, rank, rank, world_size="2")
    assert train_command._resume(_TrainerAtAnotherSize(), {}, "state.pth", None) == 2
    err = capsys.readouterr().err
    assert (err == "fastp2p train: error: cannot resume epoch 1 at its image 3\n") is said, err
    assert said or err == ""


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_a_netG_refused_at_once_is_said_once_per_node(tmp_path, monkeypatch, capsys, rank,
                                                      said):
    _as_rank(monkeypatch, rank, rank, world_size="2")
    argv = train_argv(tmp_path / "data", tmp_path / "ckpt", "--netG", "unet_100")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert ("fastp2p train: error:" in err and "unet_100" in err) is said, err
    assert said or err == ""


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_a_run_failed_before_training_is_said_once_per_node(tmp_path, monkeypatch, capsys, rank,
                                                            said):
    # one process with torchrun's numbers of a node's first (or second) process: the failure
    # after the processes start, an image that cannot be read, takes run's own except
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "1.jpg").write_text("no image")
    _as_rank(monkeypatch, rank, rank, world_size="1")
    assert main(train_argv(tmp_path / "data", tmp_path / "ckpt", "--no_html")) == 1
    err = capsys.readouterr().err
    assert ("fastp2p train: error:" in err and "1.jpg: not a readable image" in err) is said, err
    assert said or err == ""


@pytest.mark.parametrize("rank, prefix", [("0", ""), ("1", "rank 1: ")])
def test_a_failure_in_the_training_loop_is_said_by_the_rank_that_met_it(tmp_path, monkeypatch,
                                                                      capsys, rank, prefix):
    """A bad image in one rank's share of the data fails that rank's loop: it says so whatever
    its LOCAL_RANK (said once per node, it went unsaid off a node's first process, and the
    other ranks' line pointed at a message above that was not there)."""
    from fastp2p.data import DataError
    from fastp2p.train.engine import Pix2PixEngine

    def step_meets_a_bad_image(engine, real_A, real_B):
        raise DataError("data/train/7.jpg: cannot decode this image (image file is truncated)")
    monkeypatch.setattr(Pix2PixEngine, "step", step_meets_a_bad_image)
    _as_rank(monkeypatch, rank, rank, world_size="1")
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    assert main(train_argv(data, tmp_path / "ckpt", "--no_html")) == 1
    err = capsys.readouterr().err
    assert (f"{prefix}fastp2p train: error: data/train/7.jpg: cannot decode this image"
            in err), err


IGNORED_NOTE = ("fastp2p: ignoring 1 file in data/train (only .jpg/.jpeg/.png/.ppm/.bmp/.tif/.tiff "
                "images are read): notes.txt")


def _lines_said(result: subprocess.CompletedProcess, prefix: str | None, beginnings: list
                ) -> None:
    """``result`` said on stderr one line for each of ``beginnings``, the line's beginning
    after ``prefix`` (None: nothing at all)."""
    expected = [] if prefix is None else [prefix + beginning for beginning in beginnings]
    said = result.stderr.splitlines()
    assert len(said) == len(expected), result.stderr
    assert all(line.startswith(begun) for line, begun in zip(said, expected)), result.stderr


# as test_an_option_error_is_said_once_per_node
@pytest.mark.parametrize("rank, local_rank, prefix", [
    ("0", "0", ""), ("1", "1", None), ("2", "0", "rank 2: "), ("3", "1", None)])
def test_files_left_out_of_an_empty_split_are_named_once_per_node(tmp_path, rank, local_rank,
                                                                  prefix):
    """The note naming the files a split's listing left out came from every process, before
    the refusal of the split (said before torch loads) that the node's first process alone
    says."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "notes.txt").write_text("not an image")
    result = _train_as_rank(["--dataroot", "data", "--device", "cpu"], tmp_path, rank,
                            local_rank)
    assert result.returncode == 1, result.stderr
    _lines_said(result, prefix, [IGNORED_NOTE, "fastp2p train: error: data/train: no images "
                                 "(.jpg, .jpeg, .png, .ppm, .bmp, .tif, .tiff) found; put the A|B "
                                 "images there or point --dataroot (pack: DATAROOT) at the right "
                                 "folder"])


# one process with torchrun's numbers of a node's second (or first) process, which builds the
# dataset after torch loads, as test_a_run_failed_before_training_is_said_once_per_node
@pytest.mark.parametrize("rank, local_rank, prefix", [("1", "1", None), ("2", "0", "rank 2: ")])
def test_files_left_out_of_a_dataset_are_named_once_per_node(tmp_path, rank, local_rank,
                                                             prefix):
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "notes.txt").write_text("not an image")
    (tmp_path / "data" / "train" / "1.jpg").write_text("no image either")
    result = _train_as_rank(["--dataroot", "data", "--device", "cpu", "--no_html"], tmp_path,
                            rank, local_rank, world_size="1")
    assert result.returncode == 1, result.stderr
    _lines_said(result, prefix, [IGNORED_NOTE, "fastp2p train: error: data/train/1.jpg: not a "
                                 "readable image"])


# as test_files_left_out_of_a_dataset_are_named_once_per_node
@pytest.mark.parametrize("rank, local_rank, prefix", [("1", "1", None), ("2", "0", "rank 2: ")])
def test_files_skipped_as_bad_are_listed_once_per_node(tmp_path, rank, local_rank, prefix):
    """--skip-bad's list of the files it skipped came from every process of a node, each of
    which scans the same split."""
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "1.jpg").write_text("no image")
    result = _train_as_rank(["--dataroot", "data", "--device", "cpu", "--no_html",
                             "--skip-bad"], tmp_path, rank, local_rank, world_size="1")
    assert result.returncode == 1, result.stderr
    _lines_said(result, prefix, ["fastp2p: skipped 1 bad file in data/train (--skip-bad):",
                                 "  data/train/1.jpg: not a readable image",
                                 "fastp2p train: error: data/train: every image was bad and "
                                 "skipped; nothing left to load"])
