"""Whether output goes to a terminal: progress bars are drawn there only.

A tqdm bar redraws itself with carriage returns many times a second; written to a pipe or a
file (a CI log, ``nohup``, ``| tee``) every frame stays, and the log fills with them. The one
rule for every command (``fastp2p train``'s plain progress lines, ``fastp2p pack``'s bars), at
the bottom of the layers so that ``data`` and ``train`` both use it. A terminal that declares
itself dumb (``TERM=dumb``: Emacs' shell and compile buffers, some CI consoles) counts as no
terminal: it has no cursor motion, and shows a bar's frames as a log does (as ``rich`` and
cargo, among others, treat it).
"""
import functools
import os
import sys

# A bar's size on a terminal that reports none (its columns, and its rows, beyond which tqdm
# hides a bar).
FALLBACK_SIZE = {"ncols": 80, "nrows": 24}


def is_terminal(stream) -> bool:
    """Whether ``stream`` (e.g. ``sys.stderr``) is a terminal that draws bars: False for a file,
    a pipe, a stream without ``isatty`` or None (Python started without that stream), a closed
    one, or any stream under TERM=dumb."""
    if _dumb_terminal():
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _dumb_terminal() -> bool:
    return os.environ.get("TERM") == "dumb"


def bar_size(stream) -> dict:
    """tqdm's ``ncols`` and ``nrows`` for a bar on the terminal ``stream``: none (tqdm reads
    the terminal's size) unless the terminal reports 0 columns or rows, as a pseudo-terminal
    whose size nobody set does (``script``, some containers' consoles): tqdm then draws nothing
    at all, neither the bar nor the losses beside it, so FALLBACK_SIZE."""
    try:
        reported = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):  # no file descriptor, or no terminal behind it
        return {}
    return FALLBACK_SIZE if 0 in (reported.columns, reported.lines) else {}


def stderr_bar(*args, **kwargs):
    """A tqdm bar on stderr, tqdm's own stream, sized there by ``bar_size``; ``args`` and
    ``kwargs`` are tqdm's. It draws nothing under TERM=dumb (tqdm's ``disable=None`` looks at
    isatty only), nor without a stderr (None: Python started with fd 2 closed, ``2>&-``, where
    tqdm would not disable the bar and its first frame would fail on None)."""
    if _dumb_terminal() or sys.stderr is None:
        kwargs["disable"] = True
    return new_bar(*args, **bar_size(sys.stderr), **kwargs)


def new_bar(*args, **kwargs):
    """A tqdm bar (``args`` and ``kwargs`` are tqdm's) that starts no monitor thread.

    tqdm starts one at its first bar by default, even a disabled one (a bar off a terminal).
    It only redraws a bar stalled for 10 s after a fast stretch (tqdm then draws a frame only
    every so many iterations, about 0.1 s's worth at the fast speed); without it the bar is
    redrawn once those have come. At a limit on processes and threads (a cgroup's pids.max) the
    thread could not start, and tqdm printed a three-line TqdmMonitorWarning before the
    command's own one-line error."""
    return _bar_class()(*args, **kwargs)


@functools.cache
def _bar_class():
    # a subclass, so that the monitor stays at tqdm's default for other bars in the process
    # (a notebook's own); tqdm is imported only once a bar is made (an optional package)
    from tqdm import tqdm

    class BarWithoutMonitor(tqdm):
        monitor_interval = 0

    return BarWithoutMonitor
