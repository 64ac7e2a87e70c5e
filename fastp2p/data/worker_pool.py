"""Worker processes that a Ctrl-C stops cleanly, and whose death stops the run in one line:
``fastp2p pack``'s and ``--synthetic``'s.

Ctrl-C sends SIGINT to the whole process group, and only the main process should act on it: a
worker interrupted inside the pool's task queue (holding its lock, or with a task half read)
could leave the queue broken, the folder still locked, and the others printed KeyboardInterrupt
tracebacks. So each worker ignores SIGINT and dies with the main process, and the main process,
interrupted, ends them. SIGTERM ends the main process at once instead, with a line
(``exit_at_sigterm``), and the workers with it.

A worker that dies on its own (the kernel's out-of-memory killer, a crash in native code) takes
its task with it. The pool is ``concurrent.futures``' ProcessPoolExecutor, which notices the
death, ends the other workers and fails every task left with BrokenProcessPool; ``worker_pool``
turns that into one DataError naming how the worker ended. multiprocessing's Pool, used before,
started another worker instead, and was not built to go on past a death: the wait for the lost
task hung, and so did its terminate, on the task queue's read lock the dead worker held, then on
a task it left half read, then, past workarounds for those, on the result queue's write lock
held by a worker that the terminate had ended as it sent a result (a pack whose worker was
killed hung in 1 run of 4 to 2 of 7 of tests/test_pack_worker_killed.py under load).
"""
import collections
import concurrent.futures
import contextlib
import errno
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading

from fastp2p.data.errors import DataError, is_thread_not_started
from fastp2p.process_limit import process_limit_reached
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
    """Pool initializer: ignore SIGINT, end at SIGTERM as by default (the pool's end sends it: a
    Python handler forked in, ``exit_at_sigterm``'s, kept a worker running), die with
    ``parent``, then the caller's initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with(parent)
    if initializer is not None:
        initializer(*initargs)


_KEPT = "what was finished is kept: run the same command again"


def _worker_died(exitcode: int) -> str:
    if exitcode == -signal.SIGKILL:
        how, advice = ("killed by SIGKILL, which the kernel's out-of-memory killer sends",
                       ", with fewer --workers if memory ran out")
    elif exitcode < 0:
        how, advice = f"killed by {signal.Signals(-exitcode).name}", ""
    else:
        how, advice = f"exited with code {exitcode}", ""
    return f"a worker process died ({how}); {_KEPT}{advice}"


def _first_death(workers: list) -> int:
    """The exit code of the worker whose death broke the pool, once every worker has ended: the
    pool ends the others by SIGTERM, or tells them to exit (0), so SIGTERM's code if none has
    another."""
    codes = [worker.exitcode for worker in workers]
    return next((code for code in codes if code not in (0, -signal.SIGTERM)), -signal.SIGTERM)


def _why_broken(broken: BaseException, workers: list) -> str:
    """The line for a pool that ``broken`` (its BrokenProcessPool) ended, once every worker has
    ended: how the worker whose death broke it ended; or, where none died on its own, the error
    that broke it in this process, which the pool keeps as ``broken``'s cause (a result that
    could not be received: a MemoryError, say, was said as a worker killed by SIGTERM, the
    pool's own SIGTERMs being the only deaths). A result cut off (EOFError) is a death's, a
    worker killed while it sent it: by an outside SIGTERM, it was said as the pool broken
    here."""
    code = _first_death(workers)
    # the cause is the error's traceback, as text between two lines of quotes
    lines = [line for line in str(broken.__cause__ or "").splitlines() if line.strip("'\" ")]
    if code != -signal.SIGTERM or not lines or lines[-1].startswith("EOFError"):
        return _worker_died(code)
    return f"the worker pool broke in this process ({lines[-1]}); {_KEPT}"


def _watch(pool: concurrent.futures.ProcessPoolExecutor, workers: list) -> None:
    """For a pool whose ``workers`` are all started (forked): leaves the pipe they send results
    on open in them only, and ends them all once one has ended. The pool's own thread does that
    too, but not while it reads a result that the dead worker was cut off sending (by its death,
    or by ``_end``): it waits for the rest, which ends (EOF) only once no process has that pipe
    open; a worker's death, or the block's end, then hung for good."""
    pool._result_queue._writer.close()
    threading.Thread(target=_end_all_at_a_death, args=(workers,), daemon=True).start()


def _end_all_at_a_death(workers: list) -> None:
    """(``_watch``'s thread.) At the block's end too, where the workers are stopping anyway."""
    multiprocessing.connection.wait([worker.sentinel for worker in workers])
    for worker in workers:
        worker.terminate()


def _start_here(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Fork ``pool``'s workers (a fork pool; its first task would) and start the feeder thread
    of its task queue in this thread, before the pool's manager thread starts: that thread
    started the feeder at its first task, and at a process limit the feeder's failure was a
    stdlib traceback ("Exception in thread") that ended the manager thread, the pool's tasks
    never run (the pack waited for them forever, or ended at a later thread's failure). Forked
    first, so that no thread of this process runs while they fork."""
    if not pool._safe_to_dynamically_spawn_children:    # a fork pool
        pool._launch_processes()
    pool._call_queue._start_thread()


def _end(pool: concurrent.futures.ProcessPoolExecutor, workers: list) -> None:
    """Ends ``pool``'s ``workers`` by SIGTERM, at once (what they were writing, a re-run
    writes again), and waits until the pool has cleaned up. Where the pool's thread is not
    running (it could not start, and its shutdown would fail joining it; or ``_start_here``
    failed before it), they were just forked and have had no task: a SIGTERM before their
    initializer resets it runs the handler forked in, which kept one running and its join
    waiting, so they are killed, and joined."""
    manager = pool._executor_manager_thread
    if manager is None or manager.ident is None:
        for worker in workers:
            worker.kill()
            worker.join()
        return
    for worker in workers:
        worker.terminate()
    pool.shutdown(cancel_futures=True)


@contextlib.contextmanager
def workers_starting(processes: int):
    """The block that makes and starts ``processes`` worker processes, or what they share: what
    fails there (an OSError: a /dev/shm read-only or absent, where their locks and shared
    values go, as in some containers; EAGAIN, or a thread that cannot start, Python's
    RuntimeError: the limit on processes and threads, or the memory limit where one is set,
    which refuses a thread's stack alike) is raised as a DataError saying so, with
    --workers 1, which packs in this process and needs none of them (a traceback was raised,
    or the OSError was said as the output folder's)."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        reason = _why_not_started(error)
        if reason is None:
            raise
        raise DataError(f"could not start {processes} worker processes ({reason}); what was "
                        "finished is kept: run the same command again with fewer --workers "
                        "(1 packs in this process)") from error


def _why_not_started(error: Exception) -> str | None:
    """What kept the workers from starting, said from ``error``; None for a RuntimeError that
    is not a thread that could not start."""
    if isinstance(error, RuntimeError):
        if not is_thread_not_started(error):
            return None
    elif error.errno != errno.EAGAIN:
        return f"[Errno {error.errno}] {error.strerror}" + (
            f": {error.filename}" if error.filename is not None else "")
    return process_limit_reached()


@contextlib.contextmanager
def worker_pool(processes: int, initializer=None, initargs: tuple = ()):
    """A ProcessPoolExecutor of ``processes`` workers (forked; spawned on Windows) that ignore
    SIGINT and die with this process, each running ``initializer(*initargs)`` first. A worker's
    death, which fails the pool's tasks with BrokenProcessPool, leaves the block as a DataError
    naming how the worker ended (``_watch``: even one cut off sending its result), or what broke
    the pool in this process where no worker died (``_why_broken``). The workers
    are ended when the block raises, and stopped once idle when it ends. A Ctrl-C while they
    start is raised once they are started, so that the block's end ends them."""
    context = multiprocessing.get_context("spawn" if sys.platform == "win32" else "fork")
    with workers_starting(processes):
        pool = concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=context, initializer=_start_worker,
            initargs=(os.getpid(), initializer, initargs))
    # the pool's own record of its workers (Python 3.14 has a terminate_workers, older ones
    # nothing public); the dict itself, which the pool's shutdown forgets but keeps filling
    workers = pool._processes
    try:
        # a KeyboardInterrupt raised inside a fork hook is swallowed by it ("Exception ignored
        # in ..."): the Ctrl-C was lost and the pack went on. A fork pool forks every worker at
        # its first task from Python 3.10.5 on (setup.py's python_requires); a spawn pool, one
        # at a task, as many as are busy.
        with workers_starting(processes):
            with stops_deferred():
                _start_here(pool)
                pool.submit(int)
            if context.get_start_method() == "fork":
                _watch(pool, list(workers.values()))
        yield pool
    except concurrent.futures.process.BrokenProcessPool as broken:
        _end(pool, list(workers.values()))
        raise DataError(_why_broken(broken, list(workers.values()))) from None
    except BaseException:
        _end(pool, list(workers.values()))
        raise
    pool.shutdown()


# Seconds the main thread waits on a pool's results between looks at its signal handlers.
RESULT_POLL_S = 0.1
# Jobs submitted to a pool ahead of the result waited for, per worker: enough to keep each busy.
JOBS_AHEAD_PER_WORKER = 4


def results_in_order(pool: concurrent.futures.ProcessPoolExecutor, function, jobs):
    """``function(job)`` for each of ``jobs`` (an iterable of any length, a generator say: only
    ``JOBS_AHEAD_PER_WORKER`` jobs a worker are drawn ahead of the result waited for), run on
    ``pool``'s workers and yielded in the order of ``jobs``. A worker's death raises
    BrokenProcessPool here (a DataError once out of ``worker_pool``'s block).

    Each result is waited for ``RESULT_POLL_S`` at a time. A wait without a timeout blocks the
    main thread in a lock that only a signal delivered to that thread interrupts; Linux may
    deliver a Ctrl-C or SIGTERM to one of the pool's helper threads instead, and Python runs
    handlers in the main thread only, so the stop waited for the next result, which workers
    killed by the same signal never send: ``fastp2p pack --synthetic`` still running 10 s after
    a SIGTERM, seen once in a test run under load."""
    jobs = iter(jobs)
    pending = collections.deque()
    while True:
        ahead = JOBS_AHEAD_PER_WORKER * pool._max_workers - len(pending)
        pending.extend(pool.submit(function, job) for job in itertools.islice(jobs, ahead))
        if not pending:
            return
        yield _result(pending.popleft())


def _result(future: concurrent.futures.Future):
    """``future``'s result, waited for ``RESULT_POLL_S`` at a time (``results_in_order``)."""
    while True:
        with contextlib.suppress(concurrent.futures.TimeoutError):
            return future.result(timeout=RESULT_POLL_S)


@contextlib.contextmanager
def exit_at_sigterm(line: str):
    """SIGTERM (`kill`, `timeout`, a job scheduler) in the block: ``line`` on stderr, then this
    process exits at once with 143, as if killed (its workers die with it, ``_die_with``).
    Python's default ended it as silently, with -15.

    Not through a KeyboardInterrupt and the pool's end, as Ctrl-C goes: that was made for
    multiprocessing's Pool, used before, whose terminate waited forever once a SIGTERM sent to
    the whole process group had killed a worker holding its task-queue lock (as a worker
    waiting for a task did); exiting at once needs no pool to end cleanly.
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
