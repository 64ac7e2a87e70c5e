"""Progress of an epoch: a tqdm bar on a terminal, plain lines anywhere else.

A tqdm bar redraws itself with carriage returns many times a second; written to a pipe or a
file (a CI log, ``nohup``, ``| tee``) every frame stays, and the log fills with them. So when the
bar's stream is not a terminal, ``progress_bar`` returns a ``PlainProgress`` that prints one line
each time the losses are read (``set_postfix``: every --log-every steps), and nothing else.
"""
import sys
import time

from fastp2p.terminal import bar_size, is_terminal


def progress_bar(stream=None, **kwargs):
    """A tqdm bar on ``stream`` (default stderr, tqdm's) if it is a terminal, else plain lines
    on stdout. ``kwargs``: tqdm's (total, initial, desc, unit)."""
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        from tqdm import tqdm
        return tqdm(file=stream, **bar_size(stream), **kwargs)
    return PlainProgress(**kwargs)


class PlainProgress:
    """The part of tqdm's interface the trainer uses, printing a line per ``set_postfix``."""

    def __init__(self, total=None, initial=0, desc="", unit="it", print_line=None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.print_line = print_line or (lambda line: print(line, flush=True))
        self.started = time.perf_counter()

    def update(self, count: int = 1) -> None:
        self.n += count

    def set_postfix(self, values: dict) -> None:
        of_total = f"/{self.total}" if self.total else ""
        fields = " ".join(f"{name} {value}" for name, value in values.items())
        self.print_line(f"{self.desc}: {self.unit} {self.n}{of_total}, "
                        f"{time.perf_counter() - self.started:.0f} s, {fields}")

    def close(self) -> None:
        pass


def time_left(seconds: float) -> str:
    """A duration for the progress line's estimate of the run's time left: "45s", "3m05s",
    "2h07m" (seconds past the minute do not matter there)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
