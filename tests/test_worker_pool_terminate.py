"""The worker pool (``fastp2p pack``'s and ``--synthetic``'s) when one of its workers dies on its
own: the block ends in one DataError naming how that worker ended, every worker ended.
multiprocessing's Pool, used before, started another worker, and its terminate could then wait
for good (on the task queue's lock the dead worker held, or on the rest of a message it was
reading): a pack whose worker was killed hung in 1 run of 4 to 2 of 7 under load
(tests/test_pack_worker_killed.py). And the pool's results, drawn a few jobs ahead, in order."""
import concurrent.futures.process
import itertools
import operator
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastp2p.data import worker_pool as worker_pool_module
from fastp2p.data.errors import DataError
from fastp2p.data.worker_pool import JOBS_AHEAD_PER_WORKER, results_in_order, worker_pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a fork pool")


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_a_death_ends_the_block_in_one_line_naming_it_and_every_worker(number):
    """The pool ends the other workers by SIGTERM: the line names the first death's signal,
    SIGTERM when every worker ended by it."""
    with pytest.raises(DataError) as raised:
        with worker_pool(2) as pool:
            workers = list(pool._processes.values())
            os.kill(workers[0].pid, number)
            for _ in results_in_order(pool, time.sleep, [60] * 4):
                pass
    assert str(raised.value).startswith(f"a worker process died (killed by "
                                        f"{signal.Signals(number).name}")
    assert all(worker.exitcode is not None for worker in workers)


def _no_memory():
    raise MemoryError


class _Unreceivable:
    """A result whose receipt (its unpickling, in the main process) runs out of memory."""

    def __reduce__(self):
        return _no_memory, ()


def _unreceivable_at_3(number: int):
    return _Unreceivable() if number == 3 else number


def test_a_pool_broken_in_this_process_says_what_broke_it_not_a_death():
    """No worker died: the pool's own SIGTERMs were said as the death that broke it."""
    with pytest.raises(DataError) as raised:
        with worker_pool(2) as pool:
            workers = list(pool._processes.values())
            list(results_in_order(pool, _unreceivable_at_3, np.random.permutation(8)))
    assert str(raised.value) == ("the worker pool broke in this process (MemoryError); what was "
                                 "finished is kept: run the same command again")
    assert all(worker.exitcode is not None for worker in workers)


class _Ended:
    exitcode = -signal.SIGTERM


def test_a_result_cut_off_by_an_outside_sigterm_is_said_a_death():
    """A worker SIGTERMed from outside while it sent a result: the pool breaks on the receipt's
    EOFError, with every worker ended by SIGTERM; it was said "broke in this process
    (EOFError)"."""
    broken = concurrent.futures.process.BrokenProcessPool("a process pool was broken")
    broken.__cause__ = concurrent.futures.process._RemoteTraceback(
        "\n\"\"\"\nTraceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
        "EOFError: Ran out of input\n\"\"\"")
    assert worker_pool_module._why_broken(broken, [_Ended(), _Ended()]) == (
        "a worker process died (killed by SIGTERM); what was finished is kept: run the same "
        "command again")


def test_results_come_in_order_with_a_few_jobs_drawn_ahead():
    """``--synthetic``'s jobs are a generator of any length: nothing is held for the jobs not
    yet started."""
    numbers = np.random.default_rng(0).integers(1, 1000, 1000).tolist()
    drawn = []

    def jobs():
        for number in numbers:
            drawn.append(number)
            yield number
    with worker_pool(2) as pool:
        first = list(itertools.islice(results_in_order(pool, operator.neg, jobs()), 5))
    assert first == [-number for number in numbers[:5]]
    assert len(drawn) <= 5 + 2 * JOBS_AHEAD_PER_WORKER


# A worker cut off while it sends its result (the pool's own queue, found in the frame of
# concurrent.futures' worker loop, which calls the task): it writes the start of a message, a
# header announcing 1000 bytes and 3 of them, then dies, or waits for the block's end. Or it
# holds the queue's write lock, as while it writes, when the other worker dies.
_CUT_OFF = textwrap.dedent("""
    import os, signal, struct, sys, time
    from fastp2p.data import DataError
    from fastp2p.data.worker_pool import results_in_order, worker_pool

    def cut_off(then_die):
        results = sys._getframe(1).f_locals["result_queue"]._writer
        os.write(results.fileno(), struct.pack("!i", 1000) + b"abc")
        if then_die:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)

    def holds_the_lock(dies):
        if dies:
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
        sys._getframe(1).f_locals["result_queue"]._wlock.acquire()
        time.sleep(60)

    if __name__ == "__main__":
        try:
            with worker_pool(2) as pool:
                if sys.argv[1] == "dies":
                    list(results_in_order(pool, cut_off, [True]))
                elif sys.argv[1] == "other_dies":
                    list(results_in_order(pool, holds_the_lock, [False, True]))
                else:
                    pool.submit(cut_off, False)
                    time.sleep(1)
                    raise KeyboardInterrupt
        except (DataError, KeyboardInterrupt) as stop:
            print(type(stop).__name__, stop)
""")


@pytest.mark.parametrize("how", ["dies", "block_ends", "other_dies"])
def test_a_result_cut_off_by_a_death_or_the_blocks_end_does_not_hang_the_pool(tmp_path, how):
    """The pool's own thread, reading that result, waited for its rest for good: the other
    worker, idle, and this process kept the pipe open (a death: no line, the run hung; the
    block's end, a Ctrl-C say: its end waited for that thread). multiprocessing's Pool, used
    before, hung at "other_dies" (its terminate ended that worker, then waited for the lock)."""
    run = subprocess.run([sys.executable, "-c", _CUT_OFF, how], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("KeyboardInterrupt" if how == "block_ends" else
                                 "DataError a worker process died (killed by SIGKILL"), run.stdout
