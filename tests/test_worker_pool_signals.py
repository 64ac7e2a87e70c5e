"""A stop signal that Linux delivers to one of a pool's helper threads still stops the process
(fastp2p.data.worker_pool.results_in_order).

Python runs signal handlers in the main thread only. Waiting on a task's result without a
timeout, the main thread sleeps in a lock that only a signal delivered to it
interrupts; a SIGTERM that went to a helper thread then waited for the next result, which the
workers, killed by the same signal, never sent (``fastp2p pack --synthetic`` was still running
10 s after a SIGTERM once, in a CI run under load). Here the signal is sent to a helper thread
on purpose, while the one worker sleeps on its task."""
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="a fork pool and a signal sent to one thread")

_SCRIPT = textwrap.dedent("""
    import signal, sys, threading, time
    from fastp2p.data.worker_pool import exit_at_sigterm, results_in_order, worker_pool

    def slow(i):
        time.sleep(60)
        return i

    def to_this_thread():
        time.sleep(0.5)     # the main thread waits on the result by then
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    if __name__ == "__main__":
        with exit_at_sigterm("stopped by SIGTERM"):
            with worker_pool(1) as pool:
                threading.Thread(target=to_this_thread).start()
                for _ in ({wait}):
                    pass
""")


def _run(wait: str, tmp_path):
    # cwd: not the checkout, whose fastp2p/ source folder would shadow the installed package
    return subprocess.Popen([sys.executable, "-c", _SCRIPT.format(wait=wait)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigterm_at_a_helper_thread_stops_a_wait_on_results(tmp_path):
    run = _run("results_in_order(pool, slow, range(2))", tmp_path)
    try:
        code = run.wait(timeout=20)
    finally:
        run.kill()
    assert code == 143 and run.stderr.read().strip() == "stopped by SIGTERM"


def test_the_same_signal_is_lost_to_a_wait_without_timeout(tmp_path):
    """The control: waiting on the results untimed (the pool's map; synthetic.py's imap did
    before), the process is still running well after the signal (so the test above can
    fail)."""
    run = _run("pool.map(slow, range(2))", tmp_path)
    try:
        time.sleep(3)
        assert run.poll() is None
    finally:
        run.kill()
        run.wait()


# A caller with its own SIGTERM handler; a task asks for the worker's handlers.
_DISPOSITIONS = textwrap.dedent("""
    import signal
    from fastp2p.data.worker_pool import worker_pool

    def handlers(_=None):    # compared here: a handler does not pickle
        return (signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)

    if __name__ == "__main__":
        signal.signal(signal.SIGTERM, lambda *_: None)
        with worker_pool(1) as pool:
            print(pool.submit(handlers).result())
""")


def test_workers_ignore_ctrl_c_and_end_at_sigterm_whatever_the_caller_set(tmp_path):
    """The pool's workers:
    - SIGTERM as by default: a library caller's own handler, forked in, kept them alive
      through the pool's terminate (pack_phase(workers=2), one shard failing while the other
      worker waited on the task queue, never returned);
    - SIGINT ignored: a Ctrl-C gave each its traceback (and multiprocessing's Pool, used
      before, forked a worker started in place of a dead one with Python's handler).
    In a process of its own, killed if it hangs (its SIGTERM handler ignores a timeout's)."""
    run = subprocess.Popen([sys.executable, "-c", _DISPOSITIONS], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, err[-3000:]
    assert out.split() == ["(True,", "True)"], out
