"""Stand-ins for driving a Trainer directly (no CLI, no DataLoader): the trainer itself over
given networks with test-sized options, a loader over fixed batches and a clock for the trainer
module's ``time``."""
import os
import signal
from types import SimpleNamespace

import torch

from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.trainer import Trainer


def stand_in_trainer(folder, netG, netD, *, world_size=1, **options):
    """(Trainer of ``netG`` / ``netD`` checkpointing into ``folder`` / "run", the lines it
    says, on either stream): 1 + 1 epochs at --batch_size 2, the losses read every step,
    samples and mid-epoch saves far apart; ``options`` replace any of those."""
    args = SimpleNamespace(**{"n_epochs": 1, "n_epochs_decay": 1, "epoch_count": 1,
                              "batch_size": 2, "log_every": 1, "display_freq": 1000,
                              "save_latest_freq": 1000, "save_by_iter": False,
                              "save_epoch_freq": 5, "precision": "fp32", **options})
    schedule = LRSchedule("linear", 2e-4, n_epochs=args.n_epochs,
                          n_epochs_decay=args.n_epochs_decay)
    lines = []
    trainer = Trainer(args, Pix2PixEngine(netG, netD), netG, netD, schedule,
                      CheckpointFolder(folder, "run"), say=lines.append, say_error=lines.append,
                      world_size=world_size)
    return trainer, lines


class ListLoader:
    """A loader over fixed (A, B) batches: what the training loop uses of one. Starting an
    epoch draws from torch's RNG, as a torch DataLoader does (its workers' base seed); with
    ``stop_in_step``, ``stop_signal`` (SIGINT: a Ctrl-C) comes to this process during the step
    that takes that batch, as the step first reads it: after the loop's wait for it, which
    takes a stop at once (``StopRequests.while_waiting``), so the step runs and the loop acts
    on the request after it."""

    def __init__(self, batches, stop_in_step=None, stop_signal=signal.SIGINT):
        self.batches, self.stop_in_step, self.stop_signal = batches, stop_in_step, stop_signal
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
            real_A, real_B = self.batches[index]
            batch = {"A": real_A, "B": real_B}
            yield (_SignalAtFirstRead(batch, self.stop_signal) if index == self.stop_in_step
                   else batch)


class _SignalAtFirstRead(dict):
    """A batch that sends ``stop_signal`` to this process when it is first read."""

    def __init__(self, batch, stop_signal):
        super().__init__(batch)
        self.stop_signal = stop_signal

    def __getitem__(self, key):
        if self.stop_signal is not None:
            signal_number, self.stop_signal = self.stop_signal, None
            os.kill(os.getpid(), signal_number)
        return super().__getitem__(key)


class Clock:
    """perf_counter for the trainer module: ``tick`` seconds later at every call."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def perf_counter(self):
        self.now += self.tick
        return self.now
