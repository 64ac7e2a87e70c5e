"""The worker pool's terminate after one of its workers died (``fastp2p pack``'s and
``--synthetic``'s pool). The pool empties its task queue so that the thread feeding it can end;
after a death it had to pass by the queue's read lock, which a dead worker may hold, and then
emptied the queue beside a live worker reading it: each got part of a message, and the run
ended in EOFError "Ran out of input" instead of the death's one line (1 CI run in ~10)."""
import os
import signal
import struct
import sys
import threading
import time

import pytest

from fastp2p.data import worker_pool as worker_pool_module
from fastp2p.data.errors import DataError
from fastp2p.data.worker_pool import _WatchedPool, worker_pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a fork pool")


def test_after_a_death_every_worker_has_ended_before_the_queue_is_emptied(monkeypatch):
    alive_at_emptying = []
    empty_the_queue = _WatchedPool._help_stuff_finish

    def watched(inqueue, task_handler, size):
        alive_at_emptying.append([w.pid for w in pool._pool if w.exitcode is None])
        empty_the_queue(inqueue, task_handler, size)
    monkeypatch.setattr(_WatchedPool, "_help_stuff_finish", staticmethod(watched))
    with pytest.raises(DataError, match="a worker process died"):
        with worker_pool(2) as pool:
            os.kill(pool._pool[0].pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pool.raise_if_a_worker_died()
                time.sleep(0.01)
    assert alive_at_emptying == [[]]


def test_a_message_cut_short_is_emptied_without_waiting_for_its_rest():
    """A worker killed while it read a task leaves the rest of the message in the queue: here a
    header announcing 1000 bytes with 3 behind it. Read as messages, the emptying waited for
    the 997 missing bytes for good."""
    context = worker_pool_module.multiprocessing.get_context("fork")
    queue = context.SimpleQueue()
    os.write(queue._writer.fileno(), struct.pack("!i", 1000) + b"abc")
    feeder_stays = threading.Event()
    feeder = threading.Thread(target=feeder_stays.wait, daemon=True)  # the pool's task handler
    feeder.start()
    emptying = threading.Thread(target=_WatchedPool._help_stuff_finish,
                                args=(queue, feeder, 1), daemon=True)
    emptying.start()
    emptying.join(timeout=10)
    feeder_stays.set()
    assert not emptying.is_alive()
    assert not queue._reader.poll()
