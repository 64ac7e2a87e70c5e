"""A training run whose terminal closes (an SSH session that drops, a closed window) gets SIGHUP,
with its data loader workers: it saves latest_* and exits with 128 + 1, as for SIGTERM, instead
of dying mid-save. Under nohup (SIGHUP ignored) it trains on."""
import os
import pty
import select
import signal
import sys
import time

import pytest
import torch

from fastp2p.data.loader import create_dataloader
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.stop_requests import StopRequests
from helpers.train_helpers import logged_steps, train_argv, write_aligned_dataset

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train_on_a_terminal(tmp_path):
    """(pid, the terminal's master side): `fastp2p train` with two loader workers, its output
    a pseudo-terminal that is its controlling terminal, as a shell in a window or over SSH."""
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "500", "--no_html")
    argv[argv.index("--num_threads") + 1] = "2"
    try:
        pid, master = pty.fork()
    except OSError as error:   # a container without /dev/ptmx
        pytest.skip(f"no pseudo-terminal on this machine ({error})")
    if pid == 0:   # the child: a new session whose controlling terminal is the pty
        try:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)   # as a login shell's, were this nohup
            os.chdir(tmp_path)   # so that `python -m` never imports a source folder instead
            os.execve(sys.executable, [sys.executable, "-m", "fastp2p", *argv], CHILD_ENV)
        finally:
            os._exit(127)
    return pid, master


def _read_until_steps_logged(master, folder, seconds=120):
    """Reads the terminal (a full one would block the run) until a step is logged; its text."""
    output, deadline = b"", time.monotonic() + seconds
    while not logged_steps(folder) and time.monotonic() < deadline:
        if select.select([master], [], [], 0.05)[0]:
            try:
                output += os.read(master, 65536)
            except OSError:   # EIO: the run ended, its terminal closed
                break
    return output.decode(errors="replace")


def test_a_closed_terminal_saves_latest_and_exits_129(tmp_path):
    pid, master = _train_on_a_terminal(tmp_path)
    folder = tmp_path / "ckpt" / "tiny"
    try:
        output = _read_until_steps_logged(master, folder)
        assert logged_steps(folder), output
    finally:
        os.close(master)   # the terminal hangs up: SIGHUP to the run and its workers
    deadline = time.monotonic() + 120
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if status[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the run did not end within 120 s of its terminal's hangup")
    assert os.waitstatus_to_exitcode(status[1]) == 128 + signal.SIGHUP, output
    saved = CheckpointFolder(tmp_path / "ckpt", "tiny")
    state = saved.load_train_state("latest")   # checksums checked: the set is whole
    assert saved.manifest("latest")["step"] == state["engine"]["steps"] \
        == logged_steps(folder)[-1]


def test_sighup_is_a_stop_request_and_left_ignored_under_nohup():
    previous, received = signal.getsignal(signal.SIGHUP), []

    def record(number, frame):
        received.append(number)
    try:
        signal.signal(signal.SIGHUP, record)
        with StopRequests() as stops:
            signal.raise_signal(signal.SIGHUP)
            assert stops.signal_number == signal.SIGHUP and not received
        assert signal.getsignal(signal.SIGHUP) is record   # given back
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with StopRequests() as stops:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
            assert stops.signal_number is None
    finally:
        signal.signal(signal.SIGHUP, previous)


class _WorkerSignalDispositions(torch.utils.data.Dataset):
    """Each item: whether the process loading it ignores SIGINT, SIGTERM and SIGHUP."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return torch.tensor([signal.getsignal(number) == signal.SIG_IGN
                             for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)])


def test_loader_workers_ignore_what_a_closed_terminal_sends_the_process_group():
    """The main process saves, then stops its workers: a worker dying of the group's signal
    first would be reported as a dead worker instead (when the main process waits on it)."""
    loader = create_dataloader(_WorkerSignalDispositions(), 2, shuffle=False, num_workers=1,
                               seed=0)
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)   # not inherited from a nohup
    try:
        (batch,) = list(loader)
    finally:
        signal.signal(signal.SIGHUP, previous)
        loader.close()
    assert batch.all(), batch
