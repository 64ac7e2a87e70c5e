"""What a stop signal does once StopRequests' block ends: ignored where the work is done (held)
in the process fastp2p is the entry of, the default where the entry's handlers were in place
and nothing was held, and a caller's own handler back otherwise. A checkpoint signal gets its
handler back in every case."""
import signal

import pytest

from fastp2p.train.stop_requests import (CHECKPOINT_SIGNALS, StopRequests,
                                         stop_before_work_with_a_line)

SIGNALS = StopRequests.SIGNALS + CHECKPOINT_SIGNALS


@pytest.fixture
def callers_handlers():
    """Every signal at a caller's handler for the test, the ones before it put back after."""
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _callers)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def _callers(signal_number, frame):
    pass


@pytest.mark.parametrize("entry, held, after", [
    (True, True, signal.SIG_IGN), (True, False, signal.SIG_DFL),
    (False, True, _callers), (False, False, _callers)],
    ids=["entry-held", "entry", "caller-held", "caller"])
def test_a_stop_signal_after_the_block(callers_handlers, entry, held, after):
    if entry:   # the entry's handlers replace only signals at their default
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        stop_before_work_with_a_line()
    checkpoint_handler = signal.getsignal(signal.SIGUSR1)
    with StopRequests(checkpoint_requests=True) as stops:
        if held:
            stops.hold()
    assert signal.getsignal(signal.SIGTERM) == after
    assert signal.getsignal(signal.SIGUSR1) == checkpoint_handler
