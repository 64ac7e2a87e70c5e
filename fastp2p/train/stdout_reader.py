"""A reader of stdout that goes away (``fastp2p train ... | head -3``): one rule for every command.

A write to a pipe whose reader has closed it fails with EPIPE (BrokenPipeError). Raised wherever
a command happened to print, each command's own error handling took it for a failure of its own:
train advised freeing disk space, test said "error: [Errno 32] Broken pipe", info and pack printed
a traceback. So while a command runs, sys.stdout is a ``GuardedStdout``: a write or flush that
finds the reader gone points stdout at the null device (later lines, and the interpreter's flush
at exit, then fail no more), raises nothing, and is a stop request where the command takes them
(train and test, ``StopRequests``: as a SIGTERM, train saves latest_* and says so on stderr);
other commands finish their work. The command then exits as a process that SIGPIPE ends would,
128 + 13 = 141, quietly.

The same stream shows a text that its encoding cannot (a path ``pé`` under
``PYTHONIOENCODING=ascii``) with backslash escapes, as Python's stderr does: the error it raised
failed pack, pack --verify and test after their work, and train before its first step.
"""
import signal
import sys

from fastp2p.train.stop_requests import StopRequests, point_at_null_device

EXIT_READER_GONE = 128 + signal.SIGPIPE


class GuardedStdout:
    """``stream`` (the command's stdout) whose reader going away is a stop request, not an
    error, and which shows with backslash escapes what its encoding lacks; every other
    attribute is the stream's."""

    def __init__(self, stream):
        self._stream = stream
        self.reader_gone = False
        # not while the arguments are parsed: a reader gone then (`--help | true`) is no stop
        # request (the before-work handler said "stopped ... nothing was saved" of a help)
        self.stops_work = False

    def write(self, text: str) -> int:
        try:
            self._write_shown(text)
        except BrokenPipeError:
            self._reader_went_away(request_stop=True)
        return len(text)

    def _write_shown(self, text: str) -> None:
        """Write ``text``, with backslash escapes for what the stream's encoding lacks (a text
        stream encodes the whole text before it writes: nothing was written when it raised)."""
        try:
            self._stream.write(text)
        except UnicodeEncodeError as error:
            # the stream's own codec: an 8-bit one's error says 'charmap', which is Latin-1
            # and would leave unescaped a character Latin-1 has and the stream's codec lacks
            encoding = getattr(self._stream, "encoding", None) or error.encoding
            self._stream.write(text.encode(encoding, "backslashreplace").decode(encoding))

    def flush(self, request_stop: bool = True) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_went_away(request_stop)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _reader_went_away(self, request_stop: bool) -> None:
        self.reader_gone = True
        _point_at_null_device(self._stream)
        if request_stop and self.stops_work:
            _request_stop()


def work_begins() -> None:
    """The command's arguments are parsed and its work begins: from now on a reader of stdout
    that goes away is a stop request where the command takes them."""
    if isinstance(sys.stdout, GuardedStdout):
        sys.stdout.stops_work = True


def run_with_guarded_stdout(command, *args) -> int:
    """``command(*args)``'s exit code, run with sys.stdout a GuardedStdout: EXIT_READER_GONE
    where the reader went away and the command did not fail otherwise."""
    stream = sys.stdout
    if stream is None:  # no stdout at all (pythonw): nothing to guard
        return command(*args)
    guarded = sys.stdout = GuardedStdout(stream)
    try:
        try:
            code = command(*args)
        except SystemExit as done:   # argparse's, after a --help or --version
            if done.code not in (0, None):
                raise
            guarded.flush(request_stop=False)
            if not guarded.reader_gone:
                raise   # a caller of main(argv) gets argparse's exit, as ever
            code = 0
        # a reader gone shows here, not in the interpreter's last flush; the work is done
        guarded.flush(request_stop=False)
    finally:
        sys.stdout = stream
    return EXIT_READER_GONE if guarded.reader_gone and code == 0 else code


def _point_at_null_device(stream) -> None:
    try:
        point_at_null_device([stream.fileno()])
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor
        pass


def _request_stop() -> None:
    """The stop request of a signal, SIGPIPE, to the stop handler this process has for SIGTERM
    where it is fastp2p's: a StopRequests (the loop saves and stops between steps or images;
    after another request, nothing more) or the handler of the work's setup
    (``stop_requests.stop_before_work_with_a_line``: it raises StoppedBeforeWork)."""
    handler = signal.getsignal(signal.SIGTERM)
    stops = getattr(handler, "__self__", None)
    if isinstance(stops, StopRequests):
        if stops.signal_number is None:
            handler(signal.SIGPIPE, None)
    elif getattr(handler, "before_work", False):
        handler(signal.SIGPIPE, None)
