"""Writing files without stopping the training loop: a host snapshot, then a writer thread.

The training thread copies what is to be written to host memory (``host_copy``: one pass of
asynchronous copies into pinned buffers and one wait on CUDA, plain clones on the CPU, so later
steps, which update the weights in place, cannot change the snapshot) and hands a job that
writes the copy to ``BackgroundWriter``: one thread, jobs run in the order given. Encoding,
hashing, fsync and renames (checkpoints) or PNG and plot rendering (samples) then overlap the
next steps. A job's error is raised on the training thread at the next ``submit`` or ``wait``,
before anything else is written.

Where that thread cannot start (the limit on processes and threads reached: a container's pids
limit; or a memory limit too low for its stack, named too where one is set), the jobs run in
the calling thread instead, said once: the loop then waits for each write, and loses no step.
"""
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from fastp2p.data.errors import is_thread_not_started
from fastp2p.process_limit import process_limit_reached


def host_copy(obj):
    """``obj`` (tensors in dicts, lists and tuples) with every tensor copied to the host,
    contiguous, detached and owning its memory; a tensor met twice is copied once (shared
    storage stays shared). Waits once for the device copies."""
    copies, on_cuda = {}, []

    def copy(value):
        if isinstance(value, torch.Tensor):
            if id(value) not in copies:
                if value.device.type == "cuda":
                    host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                    host.copy_(value.detach(), non_blocking=True)
                    on_cuda.append(value.device)
                else:
                    host = value.detach().clone(memory_format=torch.contiguous_format)
                copies[id(value)] = host
            return copies[id(value)]
        if isinstance(value, dict):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(item) for item in value)
        return value

    snapshot = copy(obj)
    for device in set(on_cuda):  # the copies are on each device's current stream
        torch.cuda.current_stream(device).synchronize()
    return snapshot


class BackgroundWriter:
    """One thread running ``submit``-ted jobs in order; ``wait`` drains it, ``close`` ends it.

    ``submit(job, in_flight=n)`` first waits until fewer than ``n`` jobs are pending: a
    checkpoint passes 1, so at most one save is in flight and the next save waits for the
    previous one (and its host snapshot is freed before the next is taken); samples and page
    refreshes pass 3, so two may queue behind a running save without stopping the loop.

    An interrupt in the main thread (a second Ctrl-C's SecondStopRequest) may land in any
    ``submit`` or ``wait``: a job goes only to a thread already started, and leaves the list
    only once done, so ``close`` still waits for every job given to the thread, and ``wait``
    for every job whose ``submit`` returned.

    Where its thread cannot start (``_started_pool``), every job runs in the calling thread,
    in ``submit``, its outcome kept as the thread's would be (raised at the next ``submit`` or
    ``wait``); ``warn`` (a callable taking a line) says so once.
    """

    def __init__(self, warn=None):
        self._pool = None    # started by the first submit (a run may write nothing)
        self._pending = []   # futures, oldest first; each dropped once done (_finish_oldest)
        self.failed = False  # a job failed: the run ends on it, whatever the jobs after it do
        self._warn = warn or (lambda line: None)
        self._in_caller = False   # the thread could not start: jobs run in ``submit``

    def submit(self, job, in_flight: int = 1) -> None:
        self.raise_errors()
        while len(self._pending) >= in_flight:
            self._finish_oldest()
        if self._pool is None and not self._in_caller:
            self._pool = self._started_pool()
            self._in_caller = self._pool is None
        self._pending.append(self._run_here(job) if self._in_caller
                             else self._pool.submit(self._run, job))

    def _started_pool(self) -> ThreadPoolExecutor | None:
        """A pool whose thread is started, on a job that does nothing; None where the thread
        cannot start (the limit on processes and threads), said in one warning line: a
        traceback at the run's first save, which lost the steps since its start. A pool starts
        its thread in its first submit, after queueing the job: an interrupt as the thread
        started left it unknown to the pool, and ``close`` returned while it wrote the job (a
        checkpoint). Interrupted here, the pool is shut down, which ends its idle thread: left to
        end when the pool was collected, it outlived a caller that kept the exception (its frames
        hold the pool), and the process hung at exit waiting for it."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="fastp2p-writer")
        try:
            pool.submit(int)
        except BaseException as error:
            pool.shutdown(wait=False)   # its None on the queue ends even a thread the pool lost
            if not is_thread_not_started(error):
                raise
            self._warn("warning: could not start the thread that writes checkpoints and "
                       f"samples ({process_limit_reached()}); they are written in the training "
                       "thread, which waits for each")
            return None
        return pool

    def _run_here(self, job) -> Future:
        """``job`` run in this thread, its outcome in a done Future as the pool's thread leaves
        it. An interrupt (a second Ctrl-C) is not kept: it goes on at once."""
        done = Future()
        try:
            done.set_result(self._run(job))
        except Exception as error:   # noqa: BLE001 - raised at the next submit or wait
            done.set_exception(error)
        return done

    def _run(self, job):
        """``job``, noting its failure in ``failed`` before the jobs queued behind it run."""
        try:
            return job()
        except BaseException:
            self.failed = True
            raise

    def _finish_oldest(self) -> None:
        """Wait for the oldest job, then drop it and raise its error. Dropped only once done:
        an interrupt in the wait leaves it listed, for the next ``wait`` (dropped before the
        wait, it was waited for by nothing and its error was lost)."""
        self._pending[0].exception()   # waits; returns the error, raised by result() below
        self._pending.pop(0).result()

    def raise_errors(self) -> None:
        """Re-raise the error of the oldest finished job that failed (dropping finished ones)."""
        while self._pending and self._pending[0].done():
            self._finish_oldest()

    def wait(self) -> None:
        """Wait for every job; re-raises the first failure (the later jobs still finish)."""
        while self._pending:
            self._finish_oldest()

    def close(self) -> None:
        """Let the jobs finish and stop the thread. Their errors are not raised: ``close`` runs
        where another error is already on its way out (``wait`` first to see them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.clear()
