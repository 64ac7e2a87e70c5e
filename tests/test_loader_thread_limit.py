"""Loader workers at the limit on processes and threads (a container's pids limit, `ulimit -u`):
a thread that cannot start, in this process (the feeder of a queue that sends the workers work)
or in a worker (its feeder, or the thread that shares its batches' file descriptors), is one
line in train and test naming that limit, with exit code 1. It was a traceback, a worker death
said as "probably out of memory", or (the sharing thread) a wait for that batch forever.

Emulated where threading raises it: a real limit needs a pids cgroup or a user that is not root
(RLIMIT_NPROC does not bind root), which a test run cannot count on; or, under fork and
forkserver alike, by a dataset whose items ask for a thread stack that cannot be mapped, which
Python refuses with the same error. Reproduced by hand with a
cgroup v1 pids.max of 3 to 10 for `fastp2p train --num_threads 2`."""
import contextlib
import errno
import multiprocessing.queues
import multiprocessing.util
import os
import subprocess
import sys
import tempfile
import threading

import pytest
import torch

from fastp2p.cli import main
from fastp2p.data.errors import THREAD_NOT_STARTED_EXIT, thread_not_started_marker
from fastp2p.data.loader import WorkersNotStarted, WorkerThreadsNotStarted, create_dataloader
from fastp2p.train.loader_failures import loader_worker_death, loader_workers_failed
from helpers.memory_limit import ample_memory_limit
from helpers.thread_limit_datasets import (ExitsWithTheThreadCode, RefusesItsWorkersThreads,
                                           unmappable_stack_refused)
from helpers.train_helpers import (one_line, tiny_test_argv, train_argv, train_tiny_run,
                                   write_aligned_dataset)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers")

_PROCESS_LIMIT = ("raise the limit on processes and threads (ulimit -u, or a container's pids "
                  "limit), or use fewer --num_threads")


def _no_thread(*args, **kwargs):
    raise RuntimeError("can't start new thread")


def _refused_in_workers(refused):
    """A ``threading.Thread.start`` that refuses, in a forked worker only, the threads that
    ``refused(thread)`` picks."""
    parent, start = os.getpid(), threading.Thread.start

    def start_or_refuse(thread):
        if os.getpid() != parent and refused(thread):
            _no_thread()
        start(thread)
    return start_or_refuse


def _is_feeder(thread) -> bool:
    return thread.name == "QueueFeederThread"


def test_train_names_the_limit_where_this_process_cannot_start_a_feeder(tmp_path, monkeypatch,
                                                                       capsys):
    """The feeder of a worker's task queue, started at its first task: a traceback."""
    monkeypatch.setattr(multiprocessing.queues.Queue, "_start_thread", _no_thread)
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "ckpt", "--no_html")
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("fastp2p train: error: could not start the data loader's 1 worker "
                           "process(es) ([Errno 11] "), line
    assert _PROCESS_LIMIT in line and "no checkpoint was written" in line, line


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_worker_that_cannot_start_its_feeder_is_the_limit_not_out_of_memory(
        tmp_path, monkeypatch, capsys, command):
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    if command == "train":
        argv = train_argv(data, tmp_path / "ckpt", "--no_html")
    else:
        argv = tiny_test_argv(data, train_tiny_run(data, tmp_path / "ckpt"), tmp_path / "res")
    argv[argv.index("--num_threads") + 1] = "1"
    capsys.readouterr()
    monkeypatch.setattr(threading.Thread, "start", _refused_in_workers(_is_feeder))
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"fastp2p {command}: error: "), line
    assert _PROCESS_LIMIT in line and "out of memory" not in line, line


_SHARING_THREAD_REFUSED = """
import multiprocessing.resource_sharer, sys, threading
sys.path.insert(0, sys.argv[1])
from test_loader_thread_limit import _refused_in_workers
from fastp2p.cli import main

sharer = multiprocessing.resource_sharer._ResourceSharer._serve
threading.Thread.start = _refused_in_workers(
    lambda thread: getattr(thread._target, "__func__", None) is sharer)
sys.exit(main(sys.argv[2:]))
"""


def test_a_worker_that_cannot_share_its_batch_is_the_limit_not_a_wait_forever(tmp_path):
    """The thread that shares a batch's file descriptors fails inside the feeder, which printed
    it and went on: the batch never came."""
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "ckpt", "--no_html")
    argv[argv.index("--num_threads") + 1] = "1"
    try:
        run = subprocess.run([sys.executable, "-c", _SHARING_THREAD_REFUSED,
                              os.path.dirname(__file__), *argv], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("train waited forever for the batch of a worker that could not share it")
    assert run.returncode == 1, run.stderr
    assert _PROCESS_LIMIT in run.stderr.splitlines()[-1], run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def _death_with_the_thread_exit_code(pid: int) -> RuntimeError:
    """torch's SIGCHLD handler's report, wherever this process is (in a step, say), of worker
    ``pid`` that exited with ``THREAD_NOT_STARTED_EXIT``."""
    return RuntimeError(f"DataLoader worker (pid {pid}) exited unexpectedly with exit code "
                        f"{THREAD_NOT_STARTED_EXIT}. Details are lost due to multiprocessing. "
                        "Rerunning with num_workers=0 may give better error trace.")


def _said_thread_not_started_death() -> str:
    """The line for a worker death reported with ``THREAD_NOT_STARTED_EXIT``, the worker having
    said it could not start a thread (its marker for its pid)."""
    pid = 2 ** 31 - 2   # above any pid_max: no worker of this process had it
    marker = thread_not_started_marker(pid)
    open(marker, "x").close()
    try:
        return loader_worker_death(_death_with_the_thread_exit_code(pid), "run it again")
    finally:
        os.remove(marker)


def test_a_worker_death_reported_with_the_thread_exit_code_names_the_limit():
    """Said not out of memory, where no memory limit is set, against torch's "probably out of
    memory" (mutation audit: that clause could be dropped, no test failing)."""
    line = _said_thread_not_started_death()
    assert "it could not start a thread, not out of memory: " + _PROCESS_LIMIT in line, line


# Under `ulimit -v` a thread whose stack cannot be mapped is refused with the same EAGAIN: the
# lines name that limit too (seen for pack's workers from 166000 KiB up)
_WITH_THE_MEMORY_LIMIT = ("raise the limit on processes and threads (ulimit -u, or a "
                          "container's pids limit), or {}, or use fewer --num_threads")


def test_a_worker_death_for_a_thread_names_the_memory_limit_where_one_is_set():
    with ample_memory_limit() as memory_limit:
        line = _said_thread_not_started_death()
    assert _WITH_THE_MEMORY_LIMIT.format(memory_limit) in line, line
    assert "out of memory" not in line, line   # it may be, under that limit


def test_workers_not_started_name_the_memory_limit_where_one_is_set():
    failed = WorkersNotStarted(OSError(errno.EAGAIN, os.strerror(errno.EAGAIN)), 2)
    with ample_memory_limit() as memory_limit:
        line = loader_workers_failed(failed, "run it again")
    assert _WITH_THE_MEMORY_LIMIT.format(memory_limit) in line, line


def test_a_worker_death_with_the_thread_exit_code_alone_is_no_limit():
    """A dataset's own code (or a C library) that exits with the same code said nothing."""
    line = loader_worker_death(_death_with_the_thread_exit_code(2 ** 31 - 3), "run it again")
    assert _PROCESS_LIMIT not in line and "exit code 71" in line, line


@pytest.fixture(params=["fork", "forkserver"])
def start_method(request):
    """The loader's workers started by fork, then by forkserver (Python 3.14's default on
    Linux), which inherits no memory of this process's: a worker's marker and its exit code
    are all the main process has. Python's default start method is put back afterwards."""
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield request.param
    multiprocessing.set_start_method(previous, force=True)


def _first_batch(dataset):
    """The first batch of ``dataset`` from one loader worker, which is then ended."""
    loader = create_dataloader(dataset, 1, shuffle=False, num_workers=1, seed=0)
    try:
        return next(iter(loader))
    finally:
        loader.close()


def test_a_worker_whose_feeder_cannot_start_is_the_limit_under_any_start_method(start_method):
    """The dataset's own items make the feeder's start fail in the worker (a stack no address
    space maps), so no patch from this process is needed to reach a forkserver's worker. Where
    this Python refuses that size itself, said as the reason it is skipped: its worker's error
    was a traceback of the dataset's own, which says nothing of why."""
    refused = unmappable_stack_refused()
    if refused:
        pytest.skip(f"no thread stack size that no address space maps is taken here: {refused}")
    markers_before = _markers_in_tmpdir()
    with pytest.raises(WorkerThreadsNotStarted) as raised:
        _first_batch(RefusesItsWorkersThreads())
    assert _PROCESS_LIMIT in loader_workers_failed(raised.value, "run it again")
    assert _markers_in_tmpdir() == markers_before


def _markers_in_tmpdir() -> set[str]:
    """The workers' markers in TMPDIR itself, where nothing removes them: they belong in this
    process's multiprocessing folder, removed with it at exit (mutation audit: a marker made
    in TMPDIR was read all the same, no test failing, and was left there for good)."""
    return {name for name in os.listdir(tempfile.gettempdir())
            if name.startswith(os.path.basename(thread_not_started_marker(0)).removesuffix("0"))}


def test_a_dataset_that_exits_with_the_thread_exit_code_is_no_limit(start_method):
    try:
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            _first_batch(ExitsWithTheThreadCode())
    except WorkerThreadsNotStarted:
        pytest.fail("a worker's own exit(71) was said as the limit on processes and threads")


def _forks_with_a_stale_marker(forked_pids):
    """An ``os.fork`` whose child first makes a ``thread_not_started_marker`` for its own pid,
    as an earlier worker of that pid (pids are reused) would have left it, and whose
    parent adds the child's pid to ``forked_pids``."""
    fork = os.fork

    def fork_after_a_stale_marker():
        pid = fork()
        if pid == 0:
            open(thread_not_started_marker(os.getpid()), "x").close()
        else:
            forked_pids.append(pid)
        return pid
    return fork_after_a_stale_marker


@pytest.mark.parametrize("start_method", ["fork"], indirect=True)   # where os.fork starts one
def test_an_earlier_workers_marker_is_not_read_for_a_later_worker_of_its_pid(start_method,
                                                                            monkeypatch):
    """A worker that left its marker and exited, then a later worker (another loader's, in
    this process) that got its pid and exited with the same code by itself: that one was said
    as the limit on processes and threads too."""
    forked_pids = []
    monkeypatch.setattr(os, "fork", _forks_with_a_stale_marker(forked_pids))
    try:
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            _first_batch(ExitsWithTheThreadCode())
    except WorkerThreadsNotStarted:
        pytest.fail("an earlier worker's marker blamed a later worker's own exit(71) on the "
                    "limit on processes and threads")
    finally:
        for pid in forked_pids:
            with contextlib.suppress(FileNotFoundError):
                os.remove(thread_not_started_marker(pid))


_DATASETS_OWN_THREAD = "a dataset's own thread"


class _StartsItsOwnThread(torch.utils.data.Dataset):
    """Starts a thread of its own for each item and, where it cannot start, does without it."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        try:
            threading.Thread(target=int, name=_DATASETS_OWN_THREAD).start()
        except RuntimeError:
            pass
        return torch.tensor(index)


def test_a_dataset_that_catches_its_own_thread_not_started_delivers_its_batch(monkeypatch):
    """Only the threads the worker sends its batches with end it: a dataset's own code may
    catch the error of a thread of its own."""
    monkeypatch.setattr(threading.Thread, "start", _refused_in_workers(
        lambda thread: thread.name == _DATASETS_OWN_THREAD))
    loader = create_dataloader(_StartsItsOwnThread(), 2, shuffle=False, num_workers=1, seed=0)
    try:
        assert next(iter(loader)).tolist() == [0, 1]
    finally:
        loader.close()
