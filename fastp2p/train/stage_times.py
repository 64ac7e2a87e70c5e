"""Where the training loop's wall time goes: waiting for data, the step, logging, samples and
checkpoints, over a steady-state window (after the first ``skip_steps`` steps, which include
compilation, CUDA-graph capture and cuDNN autotuning).

Cheap enough to be always on: two ``perf_counter`` calls per stage entered. The window opens at
the end of step ``skip_steps`` and closes at the end of the last step (or at an epoch end, where
the device is waited for, so asynchronous GPU work is inside it); stage time spent after the
window's last close (the final checkpoint, the end-of-run report) is left out of the totals, so
images/s and the stages' shares describe the same stretch of time.
"""
import time
from contextlib import contextmanager

from fastp2p.data.errors import counted

STAGES = ("data", "step", "log", "sample", "checkpoint")


class StageTimes:
    """``stage(name)`` times a block; ``step_done(images)`` after each step; ``epoch_end()``."""

    def __init__(self, skip_steps: int = 1, sync=None):
        if skip_steps < 1:   # the window opens at the end of a step
            raise ValueError(f"skip_steps must be >= 1, got {skip_steps}")
        self.skip_steps = skip_steps
        self.sync = sync            # waits for the device (None on the CPU)
        self.steps = 0              # steps seen, warm-up included
        self.images = 0             # images of this process in the window
        self.window_start = self.window_end = None
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.calls = dict.fromkeys(STAGES, 0)
        self._pending = []          # (stage, seconds) since the window last closed

    @property
    def measuring(self) -> bool:
        return self.window_start is not None

    @contextmanager
    def stage(self, name: str):
        begin = time.perf_counter()
        try:
            yield
        finally:
            if self.measuring:
                self._pending.append((name, time.perf_counter() - begin))

    def waiting(self, batches):
        """The iterator ``batches`` with the time spent waiting for each next batch timed (pass
        an iterator already started: a generator starts it only at the first batch)."""
        while True:
            with self.stage("data"):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch

    def step_done(self, images: int) -> None:
        """After each step; ``images``: this process's images in it."""
        self.steps += 1
        if self.steps == self.skip_steps:
            self._open()
        elif self.measuring:
            self.images += images
            self._close(sync=False)

    def epoch_end(self) -> None:
        """After an epoch's last step: close the window with the device's work done."""
        if self.measuring:
            self._close(sync=True)

    def _open(self) -> None:
        if self.sync is not None:
            self.sync()
        self.window_start = self.window_end = time.perf_counter()
        self._pending.clear()

    def _close(self, sync: bool) -> None:
        if sync and self.sync is not None:
            self.sync()
        self.window_end = time.perf_counter()
        for name, seconds in self._pending:
            self.seconds[name] += seconds
            self.calls[name] += 1
        self._pending.clear()

    def summary(self) -> dict:
        """This process's figures over the window (empty when no step ended inside it: a run of
        ``skip_steps`` steps or fewer has no steady state to describe)."""
        if (not self.measuring or self.steps <= self.skip_steps
                or self.window_end <= self.window_start):
            return {}
        wall = self.window_end - self.window_start
        out = {"window_s": wall, "window_steps": self.steps - self.skip_steps,
               "images": self.images, "images_per_s": self.images / wall}
        for name in STAGES:
            out[f"{name}_s"] = self.seconds[name]
            out[f"{name}_calls"] = self.calls[name]
            out[f"{name}_share"] = self.seconds[name] / wall
        return out

    def describe(self) -> str:
        figures = self.summary()
        if not figures:
            return ""
        parts = [f"{name} {100 * figures[f'{name}_share']:.1f}%" for name in STAGES
                 if figures[f"{name}_calls"]]
        return (f"{figures['images_per_s']:.1f} images/s over "
                f"{counted(figures['window_steps'], 'step')} after the first {self.skip_steps}; "
                "time in " + ", ".join(parts))
