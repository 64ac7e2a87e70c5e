"""Progress of an epoch: a tqdm bar on a terminal, plain lines anywhere else.

A tqdm bar redraws itself with carriage returns many times a second; written to a pipe or a
file (a CI log, ``nohup``, ``| tee``) every frame stays, and the log fills with them. So when the
bar's stream is not a terminal, ``progress_bar`` returns a ``PlainProgress`` that prints one line
each time the losses are read (``show_read``: every --log-every steps), and nothing else.

On a terminal the losses of each read are a line above the bar (``TerminalProgress``), not the
bar's postfix: tqdm cuts a bar at the terminal's width, and beside its counters and rates the
four losses were cut at 80 columns and gone at 40.
"""
import sys
import time

from fastp2p.terminal import bar_size, is_terminal, new_bar


def progress_bar(stream=None, **kwargs):
    """A TerminalProgress on ``stream`` (default stderr, tqdm's) if it is a terminal, else
    plain lines on stdout. ``kwargs``: tqdm's (total, initial, desc, unit)."""
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        return TerminalProgress(stream, **kwargs)
    return PlainProgress(**kwargs)


def _position(desc: str, unit: str, count: int, total) -> str:
    """Where the epoch is: "epoch 2/24: step 24/26" (no "/N" without a total)."""
    return f"{desc}: {unit} {count}{f'/{total}' if total else ''}"


def _fields(values: dict) -> str:
    return " ".join(f"{name} {value}" for name, value in values.items())


class TerminalProgress:
    """A tqdm bar with the run's speed beside it, and a line of losses above it at each read
    (through tqdm.write, on stdout as the run's other progress lines, which keeps the bar
    whole below them)."""

    def __init__(self, stream, total=None, initial=0, desc="", unit="it"):
        self.bar = new_bar(file=stream, total=total, initial=initial, desc=desc, unit=unit,
                           **bar_size(stream))

    def update(self, count: int = 1) -> None:
        self.bar.update(count)

    def show_read(self, speed: dict, losses: dict) -> None:
        """``speed`` (short: images/s, time left) beside the bar, ``losses`` on a line."""
        self.bar.set_postfix(speed)
        bar = self.bar
        bar.write(f"{_position(bar.desc, bar.unit, bar.n, bar.total)}, {_fields(losses)}")

    def close(self) -> None:
        self.bar.close()


class PlainProgress:
    """TerminalProgress's interface, printing a line per ``show_read``: "epoch 2/24: step 24/26,
    101 s in this epoch (since the resume, in a resumed one), img/s 7.6 left 40m25s G_GAN ..."."""

    def __init__(self, total=None, initial=0, desc="", unit="it", print_line=None):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.print_line = print_line or (lambda line: print(line, flush=True))
        self.started = time.perf_counter()

    def update(self, count: int = 1) -> None:
        self.n += count

    def show_read(self, speed: dict, losses: dict) -> None:
        self.print_line(f"{_position(self.desc, self.unit, self.n, self.total)}, "
                        f"{time.perf_counter() - self.started:.0f} s in this epoch, "
                        f"{_fields({**speed, **losses})}")

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


class TimeLeftEstimate:
    """The progress line's estimate of the run's time left. A read's speed counts only the steps
    since the read before; what recurs every epoch besides them (its end's checkpoint, sample
    and page, the loss reads, the loader's start) falls outside it, and made the estimate short
    wherever that work is slow (fsync on a busy disk). So once a whole epoch has run (from its
    first batch: a resume's rest of an epoch is not one; nor is the first epoch a process runs,
    which holds its one-off start: warm-up, CUDA-graph capture, compiles, tens of seconds on a
    GPU where an epoch may take a few), the estimate takes its wall time per step, from its
    start to the next epoch's, which counts all of that; before, the latest read's speed."""

    def __init__(self):
        self._epoch_start = None       # (clock, steps run) at the current epoch's start
        self._whole_epoch = False      # whether the current epoch is one to measure by
        self._seconds_per_step = None  # the latest whole epoch's

    def epoch_started(self, now: float, steps_run: int, whole: bool) -> None:
        """An epoch starts at clock ``now`` with ``steps_run`` steps run in this process so far;
        ``whole``: it is one to measure by (it starts at its first batch, and is not the first
        this process runs). Ends the epoch before, if there was one."""
        if self._whole_epoch and steps_run > self._epoch_start[1]:
            began, steps_before = self._epoch_start
            self._seconds_per_step = (now - began) / (steps_run - steps_before)
        self._epoch_start, self._whole_epoch = (now, steps_run), whole

    def seconds_left(self, steps_left: int, steps_per_s: float) -> float | None:
        """Seconds for ``steps_left`` more steps, ``steps_per_s`` the latest read's speed
        (until a whole epoch has run); None when there is no speed to go by."""
        if self._seconds_per_step is not None:
            return steps_left * self._seconds_per_step
        return steps_left / steps_per_s if steps_per_s > 0 else None
