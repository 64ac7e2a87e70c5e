"""Every error line of a command begins "fastp2p COMMAND: error: ", the words argparse uses for
the errors it finds while parsing: the checks that run later said "fastp2p train: error: " for
some problems and a bare "error: " for others (a missing --dataroot, a checkpoints folder that
cannot be made, the trainer's own failures; every refusal of `fastp2p test`), so that what a user
or a script looked for depended on which check found the problem."""
import sys

import pytest

from fastp2p.cli import main
from fastp2p.command_errors import error_line
from helpers.train_helpers import tiny_test_argv, train_argv, write_aligned_dataset

CPU_OOM = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                       "2147483648 bytes. Error code 12")


def _error_lines(text: str) -> list:
    return [line for line in text.splitlines() if "error:" in line]


def _assert_prefixed(command: str, text: str) -> None:
    lines = _error_lines(text)
    assert lines, text
    for line in lines:
        assert line.startswith(f"fastp2p {command}: error: "), line


def test_the_prefix_is_argparse_s():
    assert error_line("train", "x") == "fastp2p train: error: x"


@pytest.mark.parametrize("command, extra, code", [
    ("train", ["--bogus"], 2),  # argparse's own
    ("train", ["--continue_train", "--overwrite"], 2),
    ("train", ["--dataroot", "{tmp}/nowhere"], 1),
    ("train", ["--checkpoints_dir", "{tmp}/a_file/checkpoints"], 1),
    ("test", ["--dataroot", "{tmp}/nowhere"], 1),
    ("test", [], 1),  # no run trained
    ("test", ["--gpu_ids", "0,1"], 2),
], ids=["train-unknown-option", "train-two-modes", "train-no-dataroot", "train-folder-is-file",
        "test-no-dataroot", "test-no-checkpoint", "test-two-gpus"])
def test_a_refused_command_s_error_lines_begin_with_its_prefix(tmp_path, capsys, command, extra,
                                                              code):
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    (tmp_path / "a_file").write_text("")
    argv = (train_argv(data, tmp_path / "checkpoints") if command == "train"
            else tiny_test_argv(data, tmp_path / "checkpoints", tmp_path / "results"))
    argv += [word.format(tmp=tmp_path) for word in extra]  # the last of a repeated option wins
    assert main(argv) == code
    _assert_prefixed(command, capsys.readouterr().err)


def test_the_trainer_s_own_error_line_has_the_train_prefix(tmp_path, monkeypatch, capsys):
    """The trainer's failures (here out of memory in the first step) are said through its
    ``say``: the progress stream and the run's log, not stderr; the same words all the same."""
    from fastp2p.train.engine import Pix2PixEngine

    def step(self, real_A, real_B):
        raise CPU_OOM
    monkeypatch.setattr(Pix2PixEngine, "step", step)
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    assert main(train_argv(data, tmp_path / "checkpoints")) == 1
    captured = capsys.readouterr()
    _assert_prefixed("train", captured.out + captured.err)


@pytest.mark.parametrize("verify", [False, True], ids=["pack", "pack-verify"])
def test_pack_s_missing_package_line_has_the_pack_prefix(tmp_path, monkeypatch, capsys, verify):
    import fastp2p.optional_packages as optional_packages

    real = optional_packages.require_packages

    def tqdm_too(modules, extra, needed_by=None):  # --verify off a terminal needs no tqdm
        real(tuple(modules) + (() if "tqdm" in modules else ("tqdm",)), extra, needed_by)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # None in sys.modules: the import fails
    monkeypatch.setattr(optional_packages, "require_packages", tqdm_too)
    argv = (["pack", "--verify", str(tmp_path)] if verify
            else ["pack", str(tmp_path / "data"), str(tmp_path / "packed")])
    assert main(argv) == 2
    err = capsys.readouterr().err
    _assert_prefixed("pack", err)
    assert "tqdm is not installed: pip install 'fastp2p[data]'" in err
    assert err.count("fastp2p pack") == 1, err  # the prefix names the command, once


def test_the_trainer_s_non_finite_stop_is_an_error_line(tmp_path, capsys):
    """lr 1e30: the losses are NaN from the first step; the stop exits 1, a failure."""
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    assert main(train_argv(data, tmp_path / "checkpoints", "--lr", "1e30")) == 1
    err = capsys.readouterr().err   # the loop's error lines go to stderr, as setup's do
    assert error_line("train", "a loss became NaN or Inf at step 1") in err, err
