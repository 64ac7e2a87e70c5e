"""Worker processes that a Ctrl-C stops cleanly: ``fastp2p pack``'s and ``--synthetic``'s.

Ctrl-C sends SIGINT to the whole process group, and only the main process should act on it: a
worker interrupted inside the pool's task queue (holding its lock, or with a task half read)
made the pool's terminate wait for that queue forever, the folder still locked, and the others
printed KeyboardInterrupt tracebacks. So each worker ignores SIGINT and dies with the main
process, and the main process, interrupted, ends them with the pool's terminate. SIGTERM ends
the main process at once instead, with a line (``exit_at_sigterm``), and the workers with it.
"""
import contextlib
import multiprocessing
import os
import signal
import sys
import threading

from fastp2p.stops_deferred import stops_deferred
from fastp2p.terminal import is_terminal


def _die_with(parent: int) -> None:
    """Linux: this worker gets SIGKILL when the main process dies, a SIGKILL included, instead
    of finishing its work for nobody and printing a broken-pipe traceback (what was finished is
    on disk; a re-run resumes from it)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _start_worker(parent: int, initializer, initargs: tuple) -> None:
    """Pool initializer: ignore SIGINT, end at SIGTERM as by default (the pool's terminate sends
    it: a Python handler forked in, ``exit_at_sigterm``'s, left a worker blocked on the task
    queue's lock running), die with ``parent``, then the caller's initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with(parent)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def worker_pool(processes: int, initializer=None, initargs: tuple = ()):
    """A ``multiprocessing`` pool of ``processes`` workers (forked; spawned on Windows) that
    ignore SIGINT and die with this process, each running ``initializer(*initargs)`` first;
    terminated when the block ends. A Ctrl-C while it starts is raised once it is started, so
    that the block's end terminates it."""
    context = multiprocessing.get_context("spawn" if sys.platform == "win32" else "fork")
    with contextlib.ExitStack() as stack:
        # a KeyboardInterrupt raised inside a fork hook is swallowed by it ("Exception ignored
        # in ..."): the Ctrl-C was lost and the pack went on
        with stops_deferred():
            pool = stack.enter_context(context.Pool(
                processes, initializer=_start_worker,
                initargs=(os.getpid(), initializer, initargs)))
        yield pool


# Seconds the main thread waits on a pool's results between looks at its signal handlers.
RESULT_POLL_S = 0.1


def results_in_order(iterator):
    """The results of ``pool.imap(...)``, each waited for ``RESULT_POLL_S`` at a time. A wait
    without a timeout blocks the main thread in a lock that only a signal delivered to that
    thread interrupts; Linux may deliver a Ctrl-C or SIGTERM to one of the pool's helper
    threads instead, and Python runs handlers in the main thread only, so the stop waited for
    the next result, which workers killed by the same signal never send: ``fastp2p pack
    --synthetic`` still running 10 s after a SIGTERM, seen once in a test run under load."""
    while True:
        try:
            yield iterator.next(timeout=RESULT_POLL_S)
        except multiprocessing.TimeoutError:
            continue
        except StopIteration:
            return


@contextlib.contextmanager
def exit_at_sigterm(line: str):
    """SIGTERM (`kill`, `timeout`, a job scheduler) in the block: ``line`` on stderr, then this
    process exits at once with 143, as if killed (its workers die with it, ``_die_with``).
    Python's default ended it as silently, with -15.

    Not through a KeyboardInterrupt and the pool's terminate, as Ctrl-C goes: a SIGTERM sent
    to the whole process group kills the workers too, and one killed while it held the pool's
    task-queue lock (as a worker waiting for a task does) made that terminate wait forever.
    What the block writes must be safe to lose at any point (a pack's shards are renamed into
    place whole, and recorded by fsynced lines; a re-run resumes). Main thread only, where
    Python runs signal handlers; elsewhere the block runs with SIGTERM as it was."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def stop(signal_number: int, frame) -> None:
        if os.getpid() != owner:    # a worker forked with it: the default's end
            signal.signal(signal_number, signal.SIG_DFL)
            signal.raise_signal(signal_number)
            return
        for stream in (sys.stdout, sys.stderr):     # what was printed before it
            with contextlib.suppress(Exception):    # a write it interrupted
                stream.flush()
        # after a progress bar's unfinished line
        os.write(2, ("\n" if is_terminal(sys.stderr) else "").encode() + line.encode() + b"\n")
        os._exit(128 + signal_number)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        if previous is not None:    # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)
