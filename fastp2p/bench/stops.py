"""How a bench run stops: Ctrl-C (SIGINT) and SIGTERM (``kill``, a job scheduler) alike.

Inside ``stop_signals()`` the first stop signal raises :class:`Stopped` where the run is, so
that one path keeps what was measured, says that the run was stopped and exits with 128 + the
signal's number (SIGTERM's default action ended the process at once, silently, exit code -15).
From then on the process is on its way out, and further stop signals are ignored until it ends:
one arriving while an end-to-end job's temporary folder was being removed left it behind (tens
of MB), one arriving after the handlers were put back ended the process with -15 before its
last line, and a second Ctrl-C printed a traceback from the interpreter's exit. A caller in the
same process (``fastp2p.cli.main(argv)`` from a notebook, a test, a loop of runs) is not on its
way out: ``caller_handlers_back`` gives it its own handlers again once the command's outermost
frame is done (they stayed ignoring Ctrl-C and SIGTERM there until its process ended). A job's
clean-up runs ``deferred()``: a first stop arriving then waits for it to finish. A stop that a
job swallowed (a micro-benchmark module's ``except BaseException``) still ends the run when the
job returns (``raise_if_stopped``).

The handlers act in the process that installed them only: a worker forked meanwhile (the
end-to-end section's data preparation) inherits them, and there a stop signal does what it did
before (the pool's terminate ends the worker silently; a Stopped raised there printed a
traceback, and raised while the worker held its pool's queue lock it could hang the terminate).

No torch here: the handlers are in place before the command imports it.

Separate from ``fastp2p.train.stop_requests.StopRequests`` and ``fastp2p.data.worker_pool`` on
purpose: only setting and putting back two handlers is common (a few lines), what a stop means is
not. Training must finish its step and raises only at a second request (a flag for its loop to
check; its handlers always come back at the block's end); the worker pool only holds SIGINT back
while it starts. A bench run needs what neither has: the first stop raised wherever the run is,
every later one ignored, its handlers kept after a stop (process-wide state, not the block's),
clean-ups that a stop waits for (``deferred``), a trainer's stop taken over (``stop_run``) and
forked workers given back the handlers before. When the bench trains in this process, StopRequests
replaces these handlers for the training and puts them back after it.
"""
import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A stop of the run, raised where the run is, as Ctrl-C's KeyboardInterrupt is;
    ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signal_number: int, message: str | None = None):
        self.exit_code = 128 + signal_number
        super().__init__(message or ("Ctrl-C" if signal_number == signal.SIGINT else
                                     f"{signal.Signals(signal_number).name} received"))


class _State:
    """The stop handlers of this process (signal handlers are the process's, so is this)."""

    def __init__(self):
        self.owner = None        # the pid that installed them
        self.previous = {}       # signal: its handler before them
        self.active = False      # inside stop_signals()
        self.stopped_by = None   # the signal that stopped the run; later ones are ignored
        self.deferring = False   # inside deferred(): a stop is recorded, raised at its end


_state = _State()


def _act_as_before(signal_number: int, frame) -> None:
    """In a forked copy of the process: the handler the signal had before, for good."""
    previous = _state.previous.get(signal_number)
    previous = signal.SIG_DFL if previous is None else previous  # None: set outside Python
    signal.signal(signal_number, previous)
    if callable(previous):
        previous(signal_number, frame)
    elif previous == signal.SIG_DFL:
        signal.raise_signal(signal_number)


def _handle(signal_number: int, frame) -> None:
    if os.getpid() != _state.owner:
        _act_as_before(signal_number, frame)
    elif _state.stopped_by is None:
        _state.stopped_by = signal_number
        if not _state.deferring:
            raise Stopped(signal_number)
    # else: the run is already stopping; let its way out finish


@contextlib.contextmanager
def stop_signals():
    """SIGINT and SIGTERM raise :class:`Stopped` in the body. After a stop the handlers stay,
    ignoring further stops, until the process ends or ``caller_handlers_back`` puts the earlier
    ones back; otherwise the earlier ones are put back at the end of the body. Off the main
    thread, where Python delivers no signal and refuses to install a handler, the body runs
    with none installed (as training's StopRequests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    for signal_number in SIGNALS:
        handler = signal.getsignal(signal_number)
        if handler is not _handle:  # left by an earlier stopped run of this process: keep
            _state.previous[signal_number] = handler  # the handlers from before that one
    _state.owner, _state.active, _state.stopped_by = os.getpid(), True, None
    for signal_number in SIGNALS:
        signal.signal(signal_number, _handle)
    try:
        yield
    finally:
        _state.active = False
        if _state.stopped_by is None:
            for signal_number, handler in _state.previous.items():
                signal.signal(signal_number, handler)


@contextlib.contextmanager
def caller_handlers_back(in_process: bool):
    """Around a command's outermost frame (``fastp2p.cli.main``, ``bench.command.main``), which
    is ``in_process`` when given its argv by a caller that goes on afterwards (a notebook, a
    test, a loop of runs): as the frame returns or raises, its clean-up done and its last line
    printed, the handlers a stopped run left are replaced by the ones from before it, so that
    Ctrl-C and SIGTERM act there again. Without an argv the frame is the process's own entry
    (``fastp2p``, ``python -m fastp2p``, ``python -m benchmarks``: ``sys.exit(main())``), and
    they stay, ignoring stops until the process ends."""
    try:
        yield
    finally:
        if in_process:
            for signal_number, handler in _state.previous.items():
                if signal.getsignal(signal_number) is _handle:  # else: no stopped run left it
                    signal.signal(signal_number, handler)


@contextlib.contextmanager
def deferred():
    """A stop signal in the body stops the run when the body ends: for a job's clean-up (its
    temporary folder removed, its processes stopped), which a stop raised half-way left
    undone. A body that raises keeps its error; the run's next check stops it. A stop already
    under way (the body is the clean-up on its way out) is not raised again."""
    outermost, stopping = not _state.deferring, _state.stopped_by is not None
    _state.deferring = True
    try:
        yield
    finally:
        _state.deferring = not outermost
    if outermost and not stopping:
        raise_if_stopped()


def stop_run(signal_number: int, message: str) -> Stopped:
    """The Stopped to raise for a stop that reached the run otherwise (a trainer that caught
    the signal and returned): from here on, as after a stop signal, later ones are ignored."""
    if _state.active and _state.stopped_by is None:
        _state.stopped_by = signal_number
    return Stopped(signal_number, message)


def raise_if_stopped() -> None:
    """Raise :class:`Stopped` if the run was stopped and a job swallowed it."""
    if _state.active and _state.stopped_by is not None:
        raise Stopped(_state.stopped_by)
