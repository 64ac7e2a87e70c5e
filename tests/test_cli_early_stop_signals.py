"""SIGTERM or SIGHUP in a `fastp2p` command's first seconds (before its own stop handling is in
place) ends it with one line on stderr saying nothing was saved, and exit code 128 + the signal.

Before: the process died of the signal silently (-15), with the exit code a shell shows for a
run that was stopped and saved (143). Each signal here is sent as torch starts to import (the
first seconds of `fastp2p train`), never by a timer."""
import signal
import subprocess
import sys

import pytest

from helpers.train_helpers import train_argv, write_aligned_dataset

# `python -m fastp2p ARGV` after a hook that sends this process the signal sys.argv[1] as torch
# starts to import
SIGNAL_AT_TORCH_IMPORT = """\
import atexit, os, runpy, signal, sys
number = int(sys.argv.pop(1))
if number == signal.SIGXCPU:  # the kernel sends it again each CPU second, after the stop too
    atexit.register(os.kill, os.getpid(), number)
signal.signal(number, signal.SIG_DFL)  # as a process starts (a test run may ignore SIGHUP)

class SignalAtImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), number)
        return None

sys.meta_path.insert(0, SignalAtImport())
runpy.run_module("fastp2p", run_name="__main__", alter_sys=True)
"""


def _train_sent_at_torch_import(tmp_path, number) -> subprocess.CompletedProcess:
    """A tiny `fastp2p train` (one pair, one step), sent signal ``number`` as torch starts to
    load: a real dataset, since train refuses a missing or empty split before torch loads."""
    write_aligned_dataset(tmp_path / "dataset", pairs=1, phases=("train",))
    argv = train_argv("dataset", "ckpt", "--n_epochs_decay", "0", "--no_html")
    # outside the checkout, whose fastp2p/ would shadow the installed package
    return subprocess.run([sys.executable, "-c", SIGNAL_AT_TORCH_IMPORT, str(int(number)), *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU],
                         ids=["SIGTERM", "SIGHUP", "SIGXCPU"])
def test_a_stop_signal_before_training_is_one_line_saying_nothing_was_saved(tmp_path, number):
    """SIGXCPU is sent once more as the process exits: it is ignored once it stopped the run
    (before, the early handler's traceback, or the default's core dump and -24, came after the
    line)."""
    result = _train_sent_at_torch_import(tmp_path, number)
    name = signal.Signals(number).name
    assert result.stderr.splitlines() == [
        f"fastp2p train: stopped ({name} before the work began: nothing was saved)"], result
    assert result.returncode == 128 + number, result


@pytest.mark.parametrize("command, kept", [("train", True), ("test", True), ("pack", False),
                                           ("bench", False), ("info", False)])
def test_only_train_and_test_keep_the_early_handler(monkeypatch, command, kept):
    """pack, bench and info have their own stops (or none): the early handler made a SIGHUP to
    a pack take its Ctrl-C path (exit 130), and a bench mid-run say "before the work began"."""
    from fastp2p.train.stop_requests import (CHECKPOINT_SIGNALS, EARLY_STOP_SIGNALS,
                                             drop_early_stop_handler,
                                             stop_before_work_with_a_line)
    numbers = EARLY_STOP_SIGNALS + CHECKPOINT_SIGNALS
    # from the defaults, as a process starts (pytest's own, maybe nohup's, restored after)
    previous = {number: signal.signal(number, signal.SIG_DFL) for number in numbers}
    try:
        stop_before_work_with_a_line()
        drop_early_stop_handler(command)
        handlers = [signal.getsignal(number) for number in numbers]
        assert all(getattr(handler, "before_work", False) == kept for handler in handlers)
        assert kept or handlers == [signal.SIG_DFL] * len(numbers)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@pytest.mark.parametrize("number", [signal.SIGUSR1, signal.SIGUSR2], ids=["SIGUSR1", "SIGUSR2"])
def test_a_checkpoint_request_before_training_is_one_line_and_the_command_goes_on(tmp_path,
                                                                                  number):
    """A scheduler's warning (SLURM's --signal=USR1@60) that came while a run was still setting
    up killed it (exit 138, no line): there is nothing to save yet, so it says so and goes on,
    here to the end of the run and its checkpoint."""
    result = _train_sent_at_torch_import(tmp_path, number)
    name = signal.Signals(number).name
    assert result.stderr.splitlines() == [
        f"fastp2p: {name} received outside the training or translation loop: nothing to save "
        "now; going on (SIGTERM or Ctrl-C stops it)"], result
    assert result.returncode == 0, result
    assert (tmp_path / "ckpt" / "tiny" / "latest_net_G.pth").is_file()
