"""Holding a Ctrl-C back from work it must not cut short: ``ctrl_c_deferred``, and
``import_torch`` under it."""
import contextlib
import signal
import threading


@contextlib.contextmanager
def ctrl_c_deferred():
    """SIGINT recorded, not acted on, for the block, then raised again for the handler it had.

    For work a KeyboardInterrupt raised inside goes wrong in: a pool's fork hooks swallow it
    ("Exception ignored in ..."), so the Ctrl-C was lost and the pack went on; torch's import
    runs C++ that calls back into Python (``import_torch``). Blocking the signal instead blocks
    it in this thread only: another thread (tqdm's progress-bar monitor) then takes it, and
    Python runs the handler in this thread anyway. Processes forked meanwhile start with the
    recording handler too, until they set their own (pool workers ignore SIGINT).

    It decides nothing about what a stop means, so it shares nothing with the stop handlers of
    ``fastp2p.train.stop_requests.StopRequests`` or ``fastp2p.bench.stops`` (only setting and
    putting back a handler, a few lines): the Ctrl-C goes on to whichever handler was there
    before (Python's KeyboardInterrupt under ``fastp2p pack``, train and test; the bench's when
    its end-to-end data preparation starts a pool). SIGTERM is not held back: left at its
    default it ends the process at once, nothing half done in it."""
    handler = signal.getsignal(signal.SIGINT)
    # SIG_IGN and SIG_DFL raise nothing to lose; and only the main thread may set a handler
    if not callable(handler) or threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        if caught:
            signal.raise_signal(signal.SIGINT)


def import_torch() -> None:
    """Import torch and torch._dynamo, with a Ctrl-C during the import raised once it is done.

    A KeyboardInterrupt raised inside the import, in C++ that calls back into Python, went
    wrong in several ways. Ctrl-C in `fastp2p test`'s first second, 40 tries on a 2-core AMD
    EPYC, showed three: the process aborted (pybind11's error_already_set reached
    std::terminate: SIGABRT, exit -6); the Ctrl-C was lost and the command ran to its end; or
    numpy.linalg was left half imported, and a RecursionError came later. train and test import
    torch._dynamo anyway: building their networks on the meta device to check them needs it."""
    with ctrl_c_deferred():
        import torch            # noqa: F401
        import torch._dynamo    # noqa: F401
