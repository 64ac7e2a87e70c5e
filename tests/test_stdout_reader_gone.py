"""A reader of stdout that goes away (`fastp2p train ... | head -3`, `fastp2p info | head -1`)
ends every command quietly with 141, as a process that SIGPIPE ends; for train it is a stop
request, as a SIGTERM: latest_* saved, said on stderr. Before, train exited 1 advising to free
disk space, test said "error: [Errno 32] Broken pipe", info and pack --verify printed a
BrokenPipeError traceback. Unbuffered (PYTHONUNBUFFERED=1, as the report's runs were), each
print is a write to the pipe: where it fails does not depend on the buffer's size."""
import os
import signal
import subprocess
import sys

import pytest

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, train_argv, trained  # noqa: F401 (fixture)

EXIT_SIGPIPE = 128 + signal.SIGPIPE


def _run_with_reader_gone(tmp_path, argv, lines_read=()) -> str:
    """Run `fastp2p ARGV` with its stdout's reader gone once it has read up to a line that
    starts with one of ``lines_read`` (none: before the first line); its stderr, once it
    exited 141."""
    command = subprocess.Popen([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    while lines_read and not command.stdout.readline().decode().startswith(lines_read):
        pass
    command.stdout.close()
    err = command.stderr.read().decode()
    assert command.wait(timeout=300) == EXIT_SIGPIPE, err
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipe" not in err, err
    return err


def test_info_ends_quietly(tmp_path):
    assert _run_with_reader_gone(tmp_path, ["info"]) == ""


@pytest.mark.parametrize("argv", [["train", "--help"], ["test", "--help"], ["--version"]])
def test_a_help_ends_quietly(tmp_path, argv):
    """While the arguments are parsed a reader gone is no stop request: train's and test's
    before-work handler said 'stopped (SIGPIPE before the work began: nothing was saved)' of a
    --help piped into `true` (the second reviewer's finding)."""
    assert _run_with_reader_gone(tmp_path, argv) == ""


def test_pack_verify_ends_quietly(tmp_path, trained):
    data, _ = trained
    assert main(["pack", str(data), str(tmp_path / "packed"), "--phase", "train"]) == 0
    assert _run_with_reader_gone(tmp_path, ["pack", "--verify", str(tmp_path / "packed")]) == ""


def test_test_stops_before_its_work_in_one_line(tmp_path, trained):
    """Its first line comes before the translation: nothing was written."""
    data, checkpoints = trained
    err = _run_with_reader_gone(tmp_path, tiny_test_argv(data, checkpoints, tmp_path))
    assert err == ("fastp2p test: stopped (SIGPIPE before the work began: nothing was "
                   "saved)\n")


def test_train_saves_and_says_so_on_stderr(tmp_path, trained):
    """The reader goes after the first progress line (step 1 of 6): a step after, the run
    stops."""
    data, _ = trained
    err = _run_with_reader_gone(tmp_path, train_argv(data, tmp_path / "checkpoints",
                                                     "--no_html"), lines_read=("epoch 1/2",))
    assert "SIGPIPE received: saved" in err and "resume with --continue_train" in err, err
    assert "disk space" not in err, err
    assert (tmp_path / "checkpoints" / "tiny" / "latest_net_G.pth").is_file()


def test_under_torchrun_rank_0s_reader_gone_stops_every_rank():
    """The ranks share their stop requests in the loss read's all-reduce: SIGPIPE was not one
    of them, so rank 0 never acted on its own request."""
    from test_train_distributed_stops import _all_reduce, _two_ranks

    ranks = _two_ranks()
    ranks[0].signal_number = signal.SIGPIPE
    _all_reduce(ranks)
    assert [stops.stop_request() for stops in ranks] == [signal.SIGPIPE] * 2
