"""`fastp2p pack --workers N` whose workers cannot be started, as in containers: a /dev/shm
read-only or absent (some Singularity/HPC setups), where their locks and shared counter go, or
a process limit (`docker run --pids-limit`) reached at a fork or at one of the pool's threads.
Each is one line saying so, with --workers 1 (which packs in this process and needs neither):
the OSError was said as if it were the output folder's ("fix it"), and a thread that could not
start was two chained tracebacks. Emulated where multiprocessing and threading raise them."""
import concurrent.futures.process
import errno
import multiprocessing.synchronize
import os
import sys
import threading

import pytest

from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args
from helpers.memory_limit import ample_memory_limit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a fork pool")


def _read_only_shm(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def _no_process(*args, **kwargs):
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def _no_thread(*args, **kwargs):
    raise RuntimeError("can't start new thread")


_real_start = threading.Thread.start


def _no_thread_but_the_pools_manager(thread):
    """The limit reached past the pool's manager thread (`--pids-limit 13`, numpy's threads
    taking the rest): its queue's feeder thread, which it started at its first task, could not
    start there, a stdlib traceback ("Exception in thread") before the line."""
    if not isinstance(thread, concurrent.futures.process._ExecutorManagerThread):
        _no_thread()
    _real_start(thread)


@pytest.mark.parametrize("where, reason", [
    ((multiprocessing.synchronize.SemLock, "__init__", _read_only_shm),
     "[Errno 30] Read-only file system"),
    ((os, "fork", _no_process), "the limit on processes and threads reached"),
    ((threading.Thread, "start", _no_thread), "the limit on processes and threads reached"),
    ((threading.Thread, "start", _no_thread_but_the_pools_manager),
     "the limit on processes and threads reached")],
    ids=["read-only-dev-shm", "fork-limit", "thread-limit", "thread-limit-past-the-pools"])
def test_pack_says_its_workers_could_not_start_and_suggests_one(tmp_path, monkeypatch, capsys,
                                                                where, reason):
    make_aligned(tmp_path / "data", count=4)
    argv = tiny_pack_args(tmp_path / "data", tmp_path / "out", "--pairs-per-shard", "1")
    argv[argv.index("--workers") + 1] = "2"
    # a thread's uncaught error printed on stderr, as outside pytest (which collects them)
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    monkeypatch.setattr(*where)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"fastp2p pack: error: could not start 2 worker processes ({reason}"), err
    assert err.rstrip().endswith("run the same command again with fewer --workers (1 packs in "
                                 "this process)"), err
    monkeypatch.undo()
    assert main(argv) == 0      # the pack finishes once they can start


def test_pack_names_the_memory_limit_too_where_one_is_set(tmp_path, monkeypatch, capsys):
    """A thread whose stack cannot be mapped under `ulimit -v` is refused with the same EAGAIN
    (seen at 166000 KiB and above, up to where the workers start): it was blamed on the limit
    on processes and threads alone."""
    make_aligned(tmp_path / "data", count=2)
    argv = tiny_pack_args(tmp_path / "data", tmp_path / "out")
    argv[argv.index("--workers") + 1] = "2"
    monkeypatch.setattr(threading.Thread, "start", _no_thread)
    with ample_memory_limit() as memory_limit:
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert "(the limit on processes and threads reached: ulimit -u, or a container's pids " \
           f"limit; or {memory_limit}, too low for a thread's stack); " in err, err
