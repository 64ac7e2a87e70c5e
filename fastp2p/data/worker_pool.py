"""Worker processes that a Ctrl-C stops cleanly: ``fastp2p pack``'s and ``--synthetic``'s.

Ctrl-C sends SIGINT to the whole process group, and only the main process should act on it: a
worker interrupted inside the pool's task queue (holding its lock, or with a task half read)
made the pool's terminate wait for that queue forever, the folder still locked, and the others
printed KeyboardInterrupt tracebacks. So each worker ignores SIGINT and dies with the main
process, and the main process, interrupted, ends them with the pool's terminate. SIGTERM ends
the main process at once instead, with a line (``exit_at_sigterm``), and the workers with it.
A worker that dies on its own (the kernel's out-of-memory killer, a crash in native code) takes
its task with it: multiprocessing's pool starts another worker, and a wait for that task's
result never ended. The callers poll ``raise_if_a_worker_died`` as they wait.
"""
import contextlib
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
import threading
import time

from fastp2p.data.errors import DataError
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


class _WatchedPool(multiprocessing.pool.Pool):
    """A pool that tells when one of its workers has died (its lost task's result never comes).
    Every first death is of a worker seen here: the first workers are seen at the start, and a
    replacement is only started after a death."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._workers_seen = list(self._pool)

    def _dead_worker(self) -> multiprocessing.Process | None:
        self._workers_seen += [worker for worker in self._pool
                               if worker not in self._workers_seen]
        return next((worker for worker in self._workers_seen if worker.exitcode is not None),
                    None)

    def raise_if_a_worker_died(self) -> None:
        """DataError naming how a worker of this pool ended, if one has."""
        dead = self._dead_worker()
        if dead is not None:
            raise DataError(_worker_died(dead.exitcode))

    def terminate(self) -> None:
        """The pool's terminate, which first takes the task queue's read lock and empties the
        queue. After a worker died, that wait never ended in 1 run in 10 of a pack whose worker
        was killed: the lock stayed taken with no live process holding it (the one worker left
        waited on it too). So then the workers are ended first, none started in their place,
        and a fresh lock is taken: with the old lock passed by, the queue was emptied beside a
        live worker reading it, each getting part of a message (EOFError "Ran out of input"
        instead of the death's line, seen in a CI run)."""
        if self._dead_worker() is not None:
            self._end_every_worker()
            self._inqueue._rlock = self._ctx.Lock()
        super().terminate()

    def _end_every_worker(self) -> None:
        """Stops the thread that replaces dead workers (as terminate would), then ends the
        workers by SIGTERM and waits for them."""
        self._worker_handler._state = multiprocessing.pool.TERMINATE
        self._change_notifier.put(None)     # wakes it
        self._worker_handler.join()
        for worker in self._pool:
            if worker.exitcode is None:
                worker.terminate()
        for worker in self._pool:
            worker.join()

    @staticmethod
    def _help_stuff_finish(inqueue, task_handler, size) -> None:
        """The pool's own, reading bytes instead of messages: a worker killed while it read a
        task leaves the rest of that message in the queue, and read as messages, the queue
        then makes the reader wait for bytes that never come. Only unblocks the thread that
        feeds the queue; what is read is dropped."""
        inqueue._rlock.acquire()
        while task_handler.is_alive() and inqueue._reader.poll():
            os.read(inqueue._reader.fileno(), 1 << 16)
            time.sleep(0)


def _worker_died(exitcode: int) -> str:
    if exitcode == -signal.SIGKILL:
        how, advice = ("killed by SIGKILL, which the kernel's out-of-memory killer sends",
                       ", with fewer --workers if memory ran out")
    elif exitcode < 0:
        how, advice = f"killed by {signal.Signals(-exitcode).name}", ""
    else:
        how, advice = f"exited with code {exitcode}", ""
    return (f"a worker process died ({how}); what was finished is kept: run the same command "
            f"again{advice}")


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
            pool = stack.enter_context(_WatchedPool(
                processes, initializer=_start_worker,
                initargs=(os.getpid(), initializer, initargs), context=context))
        yield pool


# Seconds the main thread waits on a pool's results between looks at its signal handlers.
RESULT_POLL_S = 0.1


def results_in_order(pool: _WatchedPool, iterator):
    """The results of ``pool.imap(...)``, each waited for ``RESULT_POLL_S`` at a time, and a
    DataError if a worker of ``pool`` dies meanwhile (``raise_if_a_worker_died``). A wait
    without a timeout blocks the main thread in a lock that only a signal delivered to that
    thread interrupts; Linux may deliver a Ctrl-C or SIGTERM to one of the pool's helper
    threads instead, and Python runs handlers in the main thread only, so the stop waited for
    the next result, which workers killed by the same signal never send: ``fastp2p pack
    --synthetic`` still running 10 s after a SIGTERM, seen once in a test run under load."""
    while True:
        try:
            yield iterator.next(timeout=RESULT_POLL_S)
        except multiprocessing.TimeoutError:
            pool.raise_if_a_worker_died()
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
