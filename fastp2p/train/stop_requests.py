"""Stopping ``fastp2p train`` and ``fastp2p test`` early: SIGINT / SIGTERM / SIGHUP / SIGXCPU as
requests that the loop takes between steps or images (``StopRequests``), a second request that
stops at once (``SecondStopRequest``), and the training loop's own early end with an exit code
(``TrainingStopped``). Training also takes SIGUSR1 / SIGUSR2 as requests to save a checkpoint and
train on (``StopRequests(checkpoint_requests=True)``). Before those handlers are in place,
``stop_before_work_with_a_line`` makes SIGTERM, SIGHUP and SIGXCPU end the process with one line,
and SIGUSR1 / SIGUSR2 say there is nothing to save yet.

Kept apart from the epoch loop (``fastp2p.train.trainer``), which ``fastp2p test`` does not need.
"""
import os
import signal
import threading


class TrainingStopped(Exception):
    """Raised inside the loop to end training early with an exit code."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class SecondStopRequest(KeyboardInterrupt):
    """A second stop request, raised where the work is: it stops at once. ``exit_code``: 128 +
    its signal (143 for a second SIGTERM, as for the first), which ``fastp2p.cli`` returns."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StopWhileWaiting(KeyboardInterrupt):
    """A first stop request that came while the loop waited for its next batch
    (``StopRequests.while_waiting``), raised there: the loop saves what its last step left and
    stops, as after a step. ``signal_number``: the request's signal."""

    def __init__(self, signal_number: int):
        super().__init__(f"{signal.Signals(signal_number).name} while waiting for data")
        self.signal_number = signal_number


class StoppedBeforeWork(KeyboardInterrupt):
    """SIGTERM or SIGHUP before a command's own stop handling was in place (torch's import, the
    dataset's checks): nothing was saved. ``exit_code``: 128 + the signal, as by default."""

    def __init__(self, signal_number: int):
        super().__init__(f"{signal.Signals(signal_number).name} before the work began: "
                         "nothing was saved")
        self.exit_code = 128 + signal_number


# SIGXCPU: the soft CPU-time limit (`ulimit -t`, PBS pcput, LSF -c), the kernel's warning before
# its SIGKILL at the hard one; by default it killed the run with no word and nothing saved
EARLY_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)
# A scheduler's warning before its time limit (SLURM's --signal=USR1@60): by default it kills
CHECKPOINT_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
# The commands whose own stop handling takes over from the early handler (StopRequests); the
# others (pack, bench, info) keep the signals' defaults or handle them their own way.
EARLY_STOP_COMMANDS = ("train", "test")


def stop_before_work_with_a_line() -> None:
    """For the process's entry (``fastp2p``, ``python -m fastp2p``): EARLY_STOP_SIGNALS left at
    their default raise StoppedBeforeWork, which ``fastp2p.cli`` reports in one line, until a
    command's own handlers replace them (StopRequests puts the default back at its end, where
    the work is saved). By default they killed the process silently with the exit code of a
    run stopped and saved (143 for SIGTERM). SIGINT raises KeyboardInterrupt already; SIGHUP
    under nohup stays ignored. SIGUSR1 / SIGUSR2 left at their default (which killed a run
    still setting up, or one whose last set was saved) only say so in a line, whenever the
    training loop or the translation is not taking them. A process forked meanwhile that sets
    no handler of its own dies of the signal as by default."""
    owner = os.getpid()

    def in_this_process(act):
        def handle(signal_number, frame):
            if os.getpid() != owner:
                signal.signal(signal_number, signal.SIG_DFL)
                os.kill(os.getpid(), signal_number)
                return
            act(signal_number)
        handle.before_work = True
        return handle

    def stop(signal_number):
        ignore_cpu_limit_repeats(signal_number)
        raise StoppedBeforeWork(signal_number)

    def nothing_to_save(signal_number):
        # os.write, not print: a handler that prints while the interrupted code prints to the
        # same stream raises a reentrant-call error
        line = (f"fastp2p: {signal.Signals(signal_number).name} received outside the training "
                "or translation loop: nothing to save now; going on (SIGTERM or Ctrl-C stops "
                "it)\n")
        try:
            os.write(2, line.encode())
        except OSError:  # no stderr to say it on: going on is what matters
            pass
    for numbers, act in ((EARLY_STOP_SIGNALS, stop), (CHECKPOINT_SIGNALS, nothing_to_save)):
        for number in numbers:
            if signal.getsignal(number) == signal.SIG_DFL:
                signal.signal(number, in_this_process(act))


def ignore_cpu_limit_repeats(signal_number: int) -> None:
    """Once SIGXCPU was taken as the stop, ignore it for the rest of the process: the kernel
    sends it again each CPU second past the soft limit, and one reaching the default action
    (after a handler is put back, or as Python's finalisation resets its handlers) killed the
    stopped process with a core dump (-24, not exit code 152). The hard limit's SIGKILL still
    bounds a process that runs on."""
    if signal_number == signal.SIGXCPU:
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)


def drop_early_stop_handler(command: str | None) -> None:
    """Put the signals' defaults back where ``stop_before_work_with_a_line`` set its handler,
    unless ``command`` is one of EARLY_STOP_COMMANDS: another command's workers and stops are
    not made for it (a SIGHUP to a pack took its Ctrl-C path, exit 130; a bench mid-run said
    "before the work began")."""
    if command in EARLY_STOP_COMMANDS:
        return
    for number in EARLY_STOP_SIGNALS + CHECKPOINT_SIGNALS:
        if getattr(signal.getsignal(number), "before_work", False):
            signal.signal(number, signal.SIG_DFL)


class StopRequests:
    """SIGINT / SIGTERM / SIGHUP / SIGXCPU set a flag that the loop checks between steps (then
    saves and exits); a second one raises SecondStopRequest(``second_request``) at once, but for
    SIGXCPU, which the kernel repeats each CPU second past the soft limit. From then on, or once
    ``hold()`` is called (the work a second request would cut short is done), requests are
    only recorded until the block ends (then, in the ``fastp2p`` process, ignored until it
    ends: ``_handler_after``), so what is left (closing the loader's workers, the last lines)
    is not cut short into a traceback. ``fastp2p test`` stops between images the same
    way, with its own words for the second request.

    SIGHUP is what a run gets when its terminal closes or its SSH session drops; by default it
    killed the run mid-save. It is taken as a stop request unless it was ignored when the block
    began (``nohup``: the caller asked the run to outlive its terminal, so it trains on). A
    terminal that hung up fails every later write (EIO), so on SIGHUP the standard output and
    error that were a terminal at the start and are one no more go to /dev/null: the save and
    the exit that follow are not cut short by a line that cannot be shown.

    Outside the main thread it installs nothing (Python runs signal handlers in the main
    thread only, and ``signal.signal`` raises elsewhere): the work runs as it would without.

    Separate from ``fastp2p.bench.stops`` and ``fastp2p.data.worker_pool`` on purpose: only
    setting and putting back two handlers is common (a few lines), what a stop means is not.
    Here a first request must not cut a step short (a flag, checked between steps), a second
    one raises at once, and the handlers before come back at the block's end (but where the
    work is done in the ``fastp2p`` process: ``_handler_after``). A bench run raises at the
    first stop and ignores every later one, until the process ends; the worker pool only holds
    SIGINT back while it starts. SIGXCPU, once it came, is ignored from the block's end on
    (``ignore_cpu_limit_repeats``).

    With ``checkpoint_requests``, SIGUSR1 and SIGUSR2 (by default they kill the process) only
    record ``checkpoint_request``, which the training loop takes between steps: it saves and
    trains on. A batch scheduler sends one as a warning before the job's time limit (SLURM's
    ``--signal=USR1@60``), and its SIGTERM at the limit then stops the run as above.

    ``shared`` (the processes of a torchrun job): a request is the job's, whichever process
    got it, so that every process stops (or saves) at the same step and rank 0, which alone
    writes, saves. The processes sum their ``shared_flags`` in an all-reduce they make anyway
    (the loss read), and ``agree`` on the sum; the loop acts on ``stop_request`` and
    ``take_checkpoint_request``, which then return what was agreed, at that read. A process
    that acted alone stopped without the others: a SIGTERM to rank 1 killed it silently and
    rank 0 crashed in its next collective, saving nothing; a SIGUSR1 to rank 1 was lost. Until
    the job agrees on a stop, the same stop signal again is the same request (a scheduler's
    reaches a rank both directly and through torchrun); another signal, or one after the
    agreement, is the second request that stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)

    def __init__(self, second_request: str = "a second stop request: stopped at once, without "
                 "saving; --continue_train resumes from the last set saved",
                 checkpoint_requests: bool = False, shared: bool = False):
        self.signal_number = None
        self.checkpoint_request = None  # the signal number of a checkpoint request not yet taken
        self._shared = shared
        self._agreed_stop = self._agreed_checkpoint = None  # (shared) the job's, at ``agree``
        self._checkpoint_signals = CHECKPOINT_SIGNALS if checkpoint_requests else ()
        self.second_request = second_request
        self._held = False
        self._cpu_limit_reached = False  # a SIGXCPU came: ignored from the block's end on
        self._previous = {}
        self._process_entry = False   # the block replaced stop_before_work_with_a_line's
        self._terminals = ()
        self._waiting = False   # in ``while_waiting``'s wait: a first request raises

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._terminals = tuple(fd for fd in (1, 2) if os.isatty(fd))
            for sig in self.SIGNALS:
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue   # nohup
                previous = signal.signal(sig, self._handle)
                before_work = getattr(previous, "before_work", False)
                self._process_entry |= before_work
                # after the work, the default again: nothing is left unsaved
                self._previous[sig] = signal.SIG_DFL if before_work else previous
            for sig in self._checkpoint_signals:
                self._previous[sig] = signal.signal(sig, self._record_checkpoint_request)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, self._handler_after(sig, handler))
        if self._cpu_limit_reached:
            ignore_cpu_limit_repeats(signal.SIGXCPU)

    def _handler_after(self, sig, handler):
        """What ``sig`` does after the block: ``handler``, the one before it, but for a stop
        signal once the work is done (``hold``, or a second request) in a process the command
        is the entry of (``stop_before_work_with_a_line``'s handlers were in place): then the
        process is on its way out, and a stop ignored until it ends, as a bench run's. At the
        default, a SIGTERM during the last lines or the interpreter's exit killed a complete
        `fastp2p test` (-15, a stopped run's code); SIG_IGN, as Python's exit puts the default
        back in place of a Python handler. A caller of ``main(argv)`` gets its own back."""
        if self._held and self._process_entry and sig in self.SIGNALS:
            return signal.SIG_IGN
        return handler

    def hold(self) -> None:
        """From now on a stop request is only recorded, not acted on."""
        self._held = True

    def _handle(self, signal_number, frame):
        if signal_number == signal.SIGHUP:
            self._leave_hung_up_terminals()
        self._cpu_limit_reached |= signal_number == signal.SIGXCPU
        if self.signal_number is None:
            self.signal_number = signal_number
            if self._waiting:
                raise StopWhileWaiting(signal_number)
        elif signal_number == signal.SIGXCPU or self._repeated_before_agreed(signal_number):
            # the kernel sends SIGXCPU again each CPU second past the soft limit: no one asked
            # to stop at once, and the time to the hard limit is the save's
            return
        elif not self._held:  # a second Ctrl-C: stop now, without saving
            self._held = True
            raise SecondStopRequest(self.second_request, signal_number)

    def while_waiting(self, items):
        """The iterator ``items``, with a first stop request that comes while it waits for the
        next item raised there, as StopWhileWaiting. The loop checks for requests only between
        its steps, so one that came while the next batch never did (a hung network file
        system, a worker stuck in a decoder) was ignored for as long as the wait lasted (over
        20 minutes, seen). Only the wait is cut short, never a step: the loop has taken its
        last step's request already, and a batch in the making is not used (the loader is
        closed next). Not with ``shared``: a torchrun job's processes stop together, at the
        step whose loss read agrees on it, and one that stopped alone left the others
        waiting for it."""
        while True:
            self._waiting = not self._shared
            try:
                item = next(items, None)
            finally:
                self._waiting = False
            if item is None:
                return
            yield item

    def _repeated_before_agreed(self, signal_number) -> bool:
        """Whether, with ``shared``, a stop request comes again before the job agreed on a stop:
        one request reaching the rank again, not a second one, whichever signal brings it.
        SLURM signals every process of a job step, so a rank gets its SIGTERM and the one
        torchrun forwards, or a SIGTERM after its stdout reader went away (a SIGPIPE request);
        taken as a second request, it stopped the rank without saving, likely as the agreement
        waits for the next loss read (up to --log-every steps). Once agreed, another request
        stops at once."""
        return self._shared and self._agreed_stop is None

    def _record_checkpoint_request(self, signal_number, frame):
        self.checkpoint_request = signal_number

    def stop_request(self) -> int | None:
        """The signal number of the stop request to act on now (None: none): this process's,
        or with ``shared`` the job's, as of the last ``agree``."""
        return self._agreed_stop if self._shared else self.signal_number

    def take_checkpoint_request(self) -> str | None:
        """The name of the signal that asked for a checkpoint since the last call (None: none
        did; with ``shared``, none that the last ``agree`` brought); the request is taken, so
        the next call returns None until another comes."""
        if self._shared:
            number, self._agreed_checkpoint = self._agreed_checkpoint, None
        else:
            number, self.checkpoint_request = self.checkpoint_request, None
        return None if number is None else signal.Signals(number).name

    def shared_flags(self) -> list:
        """This process's requests for the job's all-reduce: one float per signal of
        SHARED_SIGNALS, 1.0 where it was asked. The checkpoint request is taken (the sum carries
        it); the stop request stays, as the second request's check needs it."""
        checkpoint, self.checkpoint_request = self.checkpoint_request, None
        return [float(number in (self.signal_number, checkpoint)) for number in SHARED_SIGNALS]

    def agree(self, flags) -> None:
        """Take the job's requests from ``flags``, the sum (or mean) of its processes'
        ``shared_flags``: the same on every process, so all act alike. A stop, once asked,
        stays asked; where several signals were, the first of SHARED_SIGNALS' order counts."""
        asked = [number for number, flag in zip(SHARED_SIGNALS, flags) if flag > 0]
        stops = [number for number in asked if number not in CHECKPOINT_SIGNALS]
        checkpoints = [number for number in asked if number in CHECKPOINT_SIGNALS]
        if self._agreed_stop is None and stops:
            self._agreed_stop = stops[0]
        if checkpoints:
            self._agreed_checkpoint = checkpoints[0]

    def _leave_hung_up_terminals(self) -> None:
        """Points standard output and error at /dev/null where they were a terminal that has
        hung up since (a hung-up terminal is no terminal to isatty); a ``kill -HUP`` while
        the terminal is open leaves them as they are."""
        hung_up = [fd for fd in self._terminals if not os.isatty(fd)]
        if not hung_up:
            return
        point_at_null_device(hung_up)


def point_at_null_device(fds) -> None:
    """Each file descriptor of ``fds`` writes to the null device from now on: where its
    terminal hung up or its pipe's reader went away, every later write would fail, the
    interpreter's flush at exit too."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(null, fd)
    finally:
        os.close(null)


# The signals whose requests a torchrun job's processes share, in ``shared_flags``' order; SIGPIPE
# is no handler's: rank 0's stdout reader gone asks it (``fastp2p.train.stdout_reader``)
SHARED_SIGNALS = StopRequests.SIGNALS + (signal.SIGPIPE,) + CHECKPOINT_SIGNALS
