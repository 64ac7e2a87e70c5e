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
    ``stop_before``, ``stop_signal`` (SIGINT: a Ctrl-C while it loads) comes to this process just
    before that batch is handed out."""

    def __init__(self, batches, stop_before=None, stop_signal=signal.SIGINT):
        self.batches, self.stop_before, self.stop_signal = batches, stop_before, stop_signal
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
                os.kill(os.getpid(), self.stop_signal)
            real_A, real_B = self.batches[index]
            yield {"A": real_A, "B": real_B}


class Clock:
    """perf_counter for the trainer module: ``tick`` seconds later at every call."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def perf_counter(self):
        self.now += self.tick
        return self.now
