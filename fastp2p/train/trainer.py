"""The epoch loop of ``fastp2p train``: schedule, logging, samples, checkpoints, failures.

Positions are counted as the reference counts them: ``--display_freq`` and
``--save_latest_freq`` in training images (all processes together), epochs from
``--epoch_count``. A saved training state records the epoch and how many batches of it are done,
so ``--continue_train`` resumes in the middle of an epoch; the loader's order and augmentation
depend only on (seed, epoch, index), so starting the loader after the done batches (which it
then never loads) reproduces the same stream.
"""
import math
import random
import signal
import time
from dataclasses import asdict, dataclass

from fastp2p.train.checkpoints import CheckpointWriteError

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass
class Progress:
    epoch: int          # the epoch being trained (or next to train)
    epoch_batches: int  # batches of that epoch already done
    images: int         # training images seen so far, all processes


class TrainingStopped(Exception):
    """Raised inside the loop to end training early with an exit code."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class StopRequests:
    """SIGINT / SIGTERM set a flag that the loop checks between steps (then saves and exits)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_number = None
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signal_number, frame):
        if self.signal_number is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        self.signal_number = signal_number


def _crossed(before: int, after: int, every: int) -> bool:
    return every > 0 and before // every != after // every


class Trainer:
    """Runs epochs of ``engine`` steps over ``loader``; rank 0 writes checkpoints and reports.

    ``checkpoints``: a CheckpointFolder; ``page`` / ``loss_log``: TrainingPage / LossLog on the
    main process, None elsewhere; ``say``: prints a line (tqdm-safe) on the main process.
    """

    def __init__(self, args, engine, netG, netD, schedule, checkpoints, *, is_main=True,
                 world_size=1, page=None, loss_log=None, say=print):
        self.args, self.engine, self.netG, self.netD = args, engine, netG, netD
        self.schedule, self.checkpoints = schedule, checkpoints
        self.is_main, self.world_size = is_main, world_size
        self.page, self.loss_log, self.say = page, loss_log, say
        # As the reference's loop: epochs epoch_count .. n_epochs + n_epochs_decay.
        self.last_epoch = args.n_epochs + args.n_epochs_decay
        self.progress = Progress(epoch=args.epoch_count, epoch_batches=0, images=0)
        self.saved_at = None
        self.sampled_at = None  # engine step of the newest sample image
        self.steps_run = 0      # steps taken by this process (not counting resumed ones)
        self._resumed_rng = None

    # ---- state ------------------------------------------------------------------------------
    def train_state(self) -> dict:
        return {"engine": self.engine.state_dict(), "schedule": self.schedule.state_dict(),
                "progress": asdict(self.progress), "python_rng": random.getstate()}

    def resume(self, state: dict) -> None:
        self.engine.load_state_dict(state["engine"])
        self.schedule.load_state_dict(state["schedule"])
        self.progress = Progress(**state["progress"])
        random.setstate(state["python_rng"])
        # Starting the epoch's data iterator draws a seed from the global RNG, which the
        # interrupted run did before it saved: restore the saved state once more after that.
        self._resumed_rng = state["engine"]["rng"]

    def save(self, labels) -> None:
        """Checkpoint under ``labels`` unless the weights went non-finite (keep the good one)."""
        self._check_finite()
        if self.is_main:
            self.checkpoints.save(labels, self.netG, self.netD, self.train_state())
            self.saved_at = self.engine.steps

    def _check_finite(self) -> None:
        bad_step = self.engine.first_nonfinite_step()
        if bad_step:
            kept = ("the last good checkpoint in " + str(self.checkpoints.path) + " is unchanged"
                    if self.saved_at is not None or self.checkpoints.path.exists()
                    else "no checkpoint was written")
            raise TrainingStopped(
                f"a loss became NaN or Inf at step {bad_step} (epoch {self.progress.epoch}); "
                f"training stopped and {kept}. Lower --lr, check the data, or try "
                "--precision fp32", EXIT_FAILED)

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self, loader, progress_bar=None) -> int:
        """Train to the last epoch; returns the exit code (0, 1 on failure, 128+signal)."""
        with StopRequests() as stops:
            try:
                while self.progress.epoch <= self.last_epoch:
                    self._run_epoch(loader, stops, progress_bar)
            except TrainingStopped as stop:
                self.say(str(stop))
                return stop.exit_code
            except CheckpointWriteError as err:
                self.say(f"error: {err}")
                return EXIT_FAILED
        return EXIT_OK

    def _run_epoch(self, loader, stops, progress_bar) -> None:
        args, engine, progress = self.args, self.engine, self.progress
        engine.set_lr(self.schedule.lr_for_epoch(progress.epoch))
        skip = progress.epoch_batches
        loader.set_epoch(progress.epoch, start_batch=skip)
        bar = None
        if progress_bar is not None:
            bar = progress_bar(total=len(loader), initial=skip,
                               desc=f"epoch {progress.epoch}/{self.last_epoch}")
        window_start, window_images, epoch_losses = time.perf_counter(), 0, []
        batches = iter(loader)
        if self._resumed_rng is not None:
            engine.load_rng_state(self._resumed_rng)
            self._resumed_rng = None
        for index, batch in enumerate(batches, start=skip):
            engine.step(batch["A"], batch["B"])
            self.steps_run += 1
            batch_images = batch["A"].shape[0] * self.world_size
            before, progress.images = progress.images, progress.images + batch_images
            progress.epoch_batches = index + 1
            window_images += batch_images
            if bar is not None:
                bar.update(1)
            if engine.steps % args.log_every == 0:
                losses = self._log(window_images / (time.perf_counter() - window_start), bar)
                epoch_losses.append(losses)
                window_start, window_images = time.perf_counter(), 0
            if _crossed(before, progress.images, args.display_freq):
                self._sample()
            if _crossed(before, progress.images, args.save_latest_freq):
                self.save(["latest"])
            if stops.signal_number is not None:
                self.save(["latest"])
                name = signal.Signals(stops.signal_number).name
                raise TrainingStopped(f"{name} received: saved {self.checkpoints.path}/latest_* "
                                      f"at step {engine.steps}; resume with --continue_train",
                                      128 + stops.signal_number)
        if bar is not None:
            bar.close()
        if progress.epoch == self.last_epoch and self.sampled_at != engine.steps:
            self._sample()  # the final model's sample, whatever --display_freq
        if engine.steps_since_read:
            epoch_losses.append(self._log(window_images / (time.perf_counter() - window_start),
                                          None))
        self._check_finite()
        generator_losses = [l["G_GAN"] + l["G_L1"] for l in epoch_losses]
        self.schedule.observe(sum(generator_losses) / len(generator_losses)
                              if generator_losses else math.nan)
        finished = progress.epoch
        progress.epoch, progress.epoch_batches = finished + 1, 0
        labels = ["latest"] + ([str(finished)] if finished % self.args.save_epoch_freq == 0
                               or finished == self.last_epoch else [])
        self.save(labels)
        if self.page is not None:
            self.page.refresh(self.loss_log)
        self.say(f"epoch {finished} done: {progress.images} images, lr {engine.lr:.3g}, "
                 f"saved {', '.join(labels)}")

    def _sample(self) -> None:
        """Write the latest step's (real_A, fake_B, real_B) and refresh the page (main process,
        and only once a step has run in this process: a resumed, finished run has none)."""
        if self.page is None or self.steps_run == 0:
            return
        self.page.add_sample(self.progress.epoch, self.engine.steps, self.engine.last_batch())
        self.page.refresh(self.loss_log)
        self.sampled_at = self.engine.steps

    def _log(self, images_per_s: float, bar) -> dict:
        losses = self.engine.read_losses()
        self._check_finite()
        if self.loss_log is not None:
            self.loss_log.append({"epoch": self.progress.epoch, "step": self.engine.steps,
                                  "images": self.progress.images, "lr": self.engine.lr,
                                  **losses, "images_per_s": round(images_per_s, 2)})
        if bar is not None:
            bar.set_postfix({"img/s": f"{images_per_s:.1f}",
                             **{name: f"{value:.3f}" for name, value in losses.items()}})
        return losses
