"""One `fastp2p train` run at a time in a run folder (fastp2p.train.run_lock): a second run of
the same --name is refused while the first holds the folder's lock, whether it is a real second
process, a torchrun job of two ranks or this process; a lock file a killed run left, one another
user left, and a file system without locks are handled.
"""
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest
import torch.multiprocessing as mp

import fastp2p.train.run_lock as run_lock
from fastp2p.cli import main
from fastp2p.train.run_lock import LOCK_NAME, RunFolderBusy, RunFolderLock
from helpers import permission_helpers
from helpers.torchrun_helpers import as_torchrun_rank, free_port
from helpers.train_helpers import folder_files, one_line, tiny_test_argv, train_argv


# Processes started here import the fastp2p this test imports (the installed package, or the
# PYTHONPATH the suite runs under); they run in a folder outside the checkout, so `python -m`
# never imports its source folder instead.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
denied = permission_helpers.denied   # the fixture, under its name here


HOLD = """
import sys
from fastp2p.train.run_lock import RunFolderLock
lock = RunFolderLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()   # until the test closes stdin
lock.release()
"""


@pytest.fixture
def holder():
    """holder(folder): a separate process holding ``folder``'s run lock until the test ends."""
    started = []

    def hold(folder):
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=CHILD_ENV,
                                   cwd=tempfile.gettempdir(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process
    yield hold
    for process in started:
        process.stdin.close()
        process.wait(timeout=60)


@pytest.mark.parametrize("extra", [[], ["--continue_train"], ["--overwrite"]],
                         ids=["fresh", "continue_train", "overwrite"])
def test_a_run_folder_another_process_holds_is_refused(data, trained, tmp_path, capsys, holder,
                                                       extra):
    checkpoints = tmp_path / "ckpt"
    if extra:   # --continue_train and --overwrite need a run in the folder
        shutil.copytree(trained, checkpoints)
    folder = checkpoints / "tiny"
    holder(folder)
    before = folder_files(folder)
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, *extra)) == 75   # EX_TEMPFAIL: try again later
    line = one_line(capsys.readouterr().err)
    assert str(folder) in line and "another `fastp2p train` run holds it" in line, line
    assert re.search(r"process \d+", line) and "--name" in line, line
    assert folder_files(folder) == before   # nothing written, nothing removed


def _logged_steps(folder) -> int:
    try:
        return len((folder / "loss_log.csv").read_text().splitlines()[1:])
    except FileNotFoundError:
        return 0


def test_a_second_real_train_process_is_refused_while_the_first_trains(data, tmp_path):
    checkpoints = tmp_path / "ckpt"
    folder = checkpoints / "tiny"
    endless = ["--n_epochs", "100000", "--n_epochs_decay", "0", "--no_html", "--log-every", "2",
               "--save_epoch_freq", "100000"]
    command = [sys.executable, "-m", "fastp2p", *train_argv(data, checkpoints, *endless)]
    log = tmp_path / "first.log"   # a file, not a pipe nobody reads until the end
    with open(log, "w") as output:
        first = subprocess.Popen(command, env=CHILD_ENV, cwd=tmp_path, stdout=output,
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and _logged_steps(folder) < 1:
            time.sleep(0.2)
        assert first.poll() is None, log.read_text()
        assert _logged_steps(folder) >= 1, "the first run logged no step in 120 s"
        assert (folder / LOCK_NAME).read_text() == f"{first.pid}\n"
        second = subprocess.run(command, env=CHILD_ENV, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 75, second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert str(folder) in line and f"process {first.pid}" in line, second.stderr
        assert first.poll() is None   # the first run is untouched and still training
    finally:
        first.send_signal(signal.SIGTERM)   # saves latest_* and exits with 128 + 15
        first.wait(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, log.read_text()
    steps = [int(row.split(",")[1]) for row in
             (folder / "loss_log.csv").read_text().splitlines()[1:]]
    assert steps and steps == sorted(set(steps))   # one run's rows only
    assert not (folder / LOCK_NAME).exists()       # gone with the run
    assert (folder / "latest_net_G.pth").is_file()


def _rank(rank, port, argv, out):
    as_torchrun_rank(rank, port)
    Path(out, f"rank{rank}").write_text(str(main(argv)))


def test_every_rank_of_a_torchrun_job_stops_when_the_folder_is_held(data, tmp_path, holder):
    """Rank 0 alone takes the lock; the other ranks get its answer and stop with it, instead
    of training on, then waiting forever at the first collective for the rank that left."""
    folder = tmp_path / "ckpt" / "tiny"
    holder(folder)
    mp.spawn(_rank, args=(free_port(), train_argv(data, tmp_path / "ckpt"), str(tmp_path)),
             nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["75", "75"]
    assert sorted(path.name for path in folder.iterdir()) == [LOCK_NAME]


def test_the_lock_in_one_process_and_its_traces(tmp_path):
    folder = tmp_path / "new" / "ckpt" / "run"
    first, second = RunFolderLock(folder), RunFolderLock(folder)
    first.acquire()
    with pytest.raises(RunFolderBusy, match=f"process {os.getpid()}"):
        second.acquire()
    first.release()
    assert not (tmp_path / "new").exists()   # a run that wrote nothing leaves no folder
    second.acquire()
    (folder / "train_opt.txt").write_text("kept")
    second.release()
    assert sorted(path.name for path in folder.iterdir()) == ["train_opt.txt"]
    # a file a killed run left is no lock: flock goes with the process
    (folder / LOCK_NAME).write_text("12345\n")
    first.acquire()
    first.release()
    assert not (folder / LOCK_NAME).exists()


def test_the_holders_pid_is_read_from_the_start_of_a_lock_file_anyone_may_grow(tmp_path):
    """Every user may write .lock: one made a sparse 64 MiB file of it under a running job. The
    busy message reads the holder's pid from the file's first line, and reads no more (the
    file was read whole, by name: a 3 GB one gave a MemoryError traceback)."""
    folder = tmp_path / "run"
    first = RunFolderLock(folder)
    first.acquire()
    os.truncate(folder / LOCK_NAME, 64 << 20)   # the pid line stays, zeros after it
    tracemalloc.start()
    try:
        with pytest.raises(RunFolderBusy, match=f"process {os.getpid()}, "):
            RunFolderLock(folder).acquire()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        first.release()
    assert peak < 1 << 20, peak


def test_a_lock_file_whose_first_line_is_no_pid_says_the_folder_is_in_use(tmp_path):
    """Every user may write .lock: a first line that is no pid (text, bytes) is left out of the
    busy message, which still says whose lock it is; it is not a ValueError of its own."""
    folder = tmp_path / "run"
    first = RunFolderLock(folder)
    first.acquire()
    try:
        (folder / LOCK_NAME).write_bytes(b"pid? " + os.urandom(16))
        with pytest.raises(RunFolderBusy) as busy:
            RunFolderLock(folder).acquire()
    finally:
        first.release()
    assert f"holds it ({folder / LOCK_NAME})" in str(busy.value)


def test_a_lock_file_another_user_left_still_locks(tmp_path, monkeypatch):
    """A shared run folder: the lock file is made writable for every user the umask allows
    (0o666 & ~umask), and one another user left without write access for us (simulated:
    opening it for writing is refused, as for a non-root user) is opened read-only and
    locked all the same, with the busy message for a second holder."""
    folder = tmp_path / "run"
    lock = RunFolderLock(folder)
    lock.acquire()
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / LOCK_NAME).stat().st_mode & 0o777 == 0o666 & ~umask
    os.close(lock._fd)   # as if the run was killed: its file stays
    lock._fd = None
    real_open = os.open

    def write_refused(path, flags, *mode):
        if flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *mode)
    monkeypatch.setattr(run_lock.os, "open", write_refused)
    first, second = RunFolderLock(folder), RunFolderLock(folder)
    first.acquire()
    with pytest.raises(RunFolderBusy, match="in use"):
        second.acquire()
    first.release()


def test_a_file_system_without_locks_trains_with_a_warning(data, tmp_path, capsys,
                                                           monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    assert main(train_argv(data, tmp_path, "--n_epochs_decay", "0", "--no_html")) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "lock" in line]
    assert len(warnings) == 1 and "does not lock files" in warnings[0], warnings
    assert (tmp_path / "tiny" / "latest_net_G.pth").is_file()
    assert not (tmp_path / "tiny" / LOCK_NAME).exists()


def test_a_lock_file_a_killed_run_left_changes_nothing(data, trained, tmp_path, capsys):
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    folder = checkpoints / "tiny"
    (folder / LOCK_NAME).write_text("999999\n")
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0")) == 2
    assert "already holds a run" in one_line(capsys.readouterr().err)
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "1", "--continue_train",
                           "--no_html")) == 0
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    capsys.readouterr()
    assert main(train_argv(data, checkpoints, "--overwrite", "--n_epochs_decay", "0",
                           "--no_html")) == 0
    assert "previous run's 3 checkpoint set(s)" in capsys.readouterr().out
    assert not (folder / LOCK_NAME).exists()


def test_a_lock_file_removed_between_open_and_lock_is_not_taken_for_the_lock(tmp_path,
                                                                            monkeypatch):
    """The run holding the folder ends (removing .lock) after a second run opened the file
    and before it locked it: that lock is on a file nobody else opens, so the second run takes
    the one at the path, and a third run is refused. Without the check the second locked the
    removed file and the third trained beside it."""
    folder = tmp_path / "run"
    folder.mkdir()
    first, second, third = (RunFolderLock(folder) for _ in range(3))
    first.acquire()
    real_open = RunFolderLock._open

    def open_then_the_first_run_ends(lock):
        fd = real_open(lock)
        if lock is second and first._fd is not None:
            first.release()
        return fd

    monkeypatch.setattr(RunFolderLock, "_open", open_then_the_first_run_ends)
    try:
        assert second.acquire() is None
        with pytest.raises(RunFolderBusy):
            third.acquire()
    finally:
        second.release()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file permissions")
@pytest.mark.parametrize("command", ["train", "test"])
def test_a_folder_this_user_cannot_write_is_named_in_one_line(data, trained, tmp_path, denied,
                                                              command):
    """A run folder (train --continue_train) or results folder (test) that exists, holds no
    .lock and cannot be written (a colleague's, shared read-only): the lock's read-only open
    found no file, which acquire() took for a folder removed meanwhile, and it tried again
    without end at 100 % CPU."""
    checkpoints = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoints)
    if command == "train":
        folder, argv = checkpoints / "tiny", train_argv(data, checkpoints, "--continue_train")
    else:
        folder = tmp_path / "results" / "tiny" / "test_latest"
        folder.mkdir(parents=True)
        argv = tiny_test_argv(data, checkpoints, tmp_path / "results")
    denied(folder, 0o555)
    run = permission_helpers.fastp2p_bound_by_permissions(tmp_path, *argv)
    assert (run.returncode, run.stderr) == (
        1, f"fastp2p {command}: error: {folder}: Permission denied\n")
    assert not (folder / LOCK_NAME).exists()
