"""StopRequests.while_waiting, in the process: a first stop request that comes while the loop
waits for its next batch is raised there (StopWhileWaiting), one during a step only recorded,
and under torchrun (``shared``) one while waiting only recorded too, as the job's ranks stop
together at the loss read that agrees on it (a rank that stopped alone left the others
waiting in their next collective). The whole runs: tests/test_stop_while_waiting_for_data.py."""
import os
import signal

import pytest

from fastp2p.train.stop_requests import StopRequests, StopWhileWaiting


def _signalled_while_made(items, number):
    """``items``, each made (as a loader's next batch) only after ``number`` came to this
    process, during the wait for it."""
    for item in items:
        os.kill(os.getpid(), number)
        yield item


def test_a_first_request_while_waiting_is_raised_there():
    with StopRequests() as stops:
        with pytest.raises(StopWhileWaiting) as stop:
            next(stops.while_waiting(_signalled_while_made(["batch"], signal.SIGTERM)))
    assert stop.value.signal_number == signal.SIGTERM
    assert stops.signal_number == signal.SIGTERM


def _taken(batches, stops, signal_in_step=None) -> list:
    """What a loop takes of ``batches`` until ``stops`` asks it to stop, ``signal_in_step``
    sent in each step. A StopWhileWaiting is a failure here (a KeyboardInterrupt would end
    pytest's session)."""
    taken = []
    try:
        for batch in batches:
            taken.append(batch)
            if signal_in_step is not None:
                os.kill(os.getpid(), signal_in_step)
            if stops.stop_request() is not None:
                break
    except StopWhileWaiting as stop:
        pytest.fail(f"raised after {taken}: {stop}", pytrace=False)
    return taken


def test_a_request_during_a_step_is_only_recorded():
    with StopRequests() as stops:
        taken = _taken(stops.while_waiting(iter(["first", "second"])), stops, signal.SIGTERM)
    assert taken == ["first"] and stops.signal_number == signal.SIGTERM


def test_under_torchrun_a_request_while_waiting_is_only_recorded_until_agreed():
    with StopRequests(shared=True) as stops:
        batches = stops.while_waiting(_signalled_while_made(["first", "second"], signal.SIGTERM))
        assert _taken(batches, stops) == ["first", "second"]
        assert stops.signal_number == signal.SIGTERM and stops.stop_request() is None
        stops.agree(stops.shared_flags())
        assert stops.stop_request() == signal.SIGTERM
