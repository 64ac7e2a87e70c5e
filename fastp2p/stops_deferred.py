"""Holding a Ctrl-C (or SIGTERM) back from work it must not cut short: ``stops_deferred``, and
``import_torch`` under it."""
import contextlib
import importlib
import signal
import threading

from fastp2p.import_memory import not_enough_memory, out_of_memory


class TorchNotImported(Exception):
    """torch's import ran out of memory (``import_torch``); the message says which limit to
    raise. ``fastp2p.cli.main`` says it in one line, exit code 1."""


@contextlib.contextmanager
def stops_deferred(numbers: tuple = (signal.SIGINT,)):
    """The signals ``numbers`` (SIGINT by default) recorded, not acted on, for the block, then
    the first one caught raised again for the handler it had.

    For work a KeyboardInterrupt raised inside goes wrong in: a pool's fork hooks swallow it
    ("Exception ignored in ..."), so the Ctrl-C was lost and the pack went on; torch's import
    runs C++ that calls back into Python (``import_torch``). Blocking the signal instead blocks
    it in this thread only: another thread (a pool's own, or a caller's) then takes it, and
    Python runs the handler in this thread anyway. Processes forked meanwhile start with the
    recording handler too, until they set their own (pool workers ignore SIGINT).

    It decides nothing about what a stop means, so it shares nothing with the stop handlers of
    ``fastp2p.train.stop_requests.StopRequests`` or ``fastp2p.bench.stops`` (only setting and
    putting back a handler, a few lines): the Ctrl-C goes on to whichever handler was there
    before (Python's KeyboardInterrupt under ``fastp2p pack``, train and test; the bench's when
    its end-to-end data preparation starts a pool). SIGTERM is held back only where asked and
    where a handler raises for it (the bench's; at its default it ends the process at once,
    nothing half done in it), and only by a block that forks nothing (``import_torch``): a pool
    worker forked with the recording handler would not end at a SIGTERM (the pool's end sends
    one) that came before its initializer set SIGTERM's default back."""
    # SIG_IGN and SIG_DFL raise nothing to lose; and only the main thread may set a handler
    on_main_thread = threading.current_thread() is threading.main_thread()
    held = {number: signal.getsignal(number) for number in numbers
            if on_main_thread and callable(signal.getsignal(number))}
    caught = []
    for number in held:
        signal.signal(number, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
        if caught:
            signal.raise_signal(caught[0])


def import_torch(module: str = "torch._dynamo") -> None:
    """Import torch and ``module`` (torch._dynamo, or torch alone for test and info, which
    need no dynamo: 4 s more), with a Ctrl-C during the import raised once it is done.

    A KeyboardInterrupt raised inside the import, in C++ that calls back into Python, went
    wrong in several ways. Ctrl-C in `fastp2p test`'s first second, 40 tries on a 2-core AMD
    EPYC, showed three: the process aborted (pybind11's error_already_set reached
    std::terminate: SIGABRT, exit -6); the Ctrl-C was lost and the command ran to its end; or
    numpy.linalg was left half imported, and a RecursionError came later. train imports
    torch._dynamo anyway (torch.optim.Adam's constructor does), and so do the bench's
    torch.compile peers. A SIGTERM that a handler raises for (the bench's) waits
    too, and so does a SIGTERM, SIGHUP or SIGXCPU that the early handler of train and test raises
    for (``stop_requests.stop_before_work_with_a_line``: a SIGHUP raised inside the import aborted
    the process or was lost, as Ctrl-C's was). An import that runs out of memory raises
    TorchNotImported, naming the limit to raise (a 20-line traceback ended in MemoryError)."""
    with stops_deferred((signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)):
        try:
            importlib.import_module(module)   # torch first, as an import does
        except (MemoryError, ImportError, OSError) as error:
            reason = out_of_memory(error)
            if reason is None:
                raise
            raise TorchNotImported(not_enough_memory("import torch", reason)) from error
