"""Stand-ins for driving a Trainer directly (no CLI, no DataLoader): a loader over fixed batches
and a clock for the trainer module's ``time``."""
import os
import signal

import torch


class ListLoader:
    """A loader over fixed (A, B) batches: what the training loop uses of one. Starting an
    epoch draws from torch's RNG, as a torch DataLoader does (its workers' base seed); with
    ``stop_before``, SIGINT comes to this process just before that batch is handed out (a Ctrl-C
    while it loads)."""

    def __init__(self, batches, stop_before=None):
        self.batches, self.stop_before = batches, stop_before
        self.dataset = range(sum(len(a) for a, _ in batches))
        self.start = 0

    def set_epoch(self, epoch, start_batch=0):
        self.start = start_batch

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()
        return self._batches()

    def _batches(self):
        for index in range(self.start, len(self.batches)):
            if index == self.stop_before:
                os.kill(os.getpid(), signal.SIGINT)
            real_A, real_B = self.batches[index]
            yield {"A": real_A, "B": real_B}


class Clock:
    """perf_counter for the trainer module: ``tick`` seconds later at every call."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def perf_counter(self):
        self.now += self.tick
        return self.now
