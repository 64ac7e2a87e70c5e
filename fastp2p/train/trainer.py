"""The epoch loop of ``fastp2p train``: schedule, logging, samples, checkpoints, failures.

Positions are counted as the reference counts them: ``--display_freq`` and
``--save_latest_freq`` in training images (all processes together), epochs from
``--epoch_count``. A saved training state records the epoch and how many batches of it are done,
so ``--continue_train`` resumes in the middle of an epoch; the loader's order and augmentation
depend only on (seed, epoch, index), so starting the loader after the done batches (which it
then never loads) reproduces the same stream. The position is kept in images too, so a resume
with another ``--batch_size`` or number of processes starts at the same image (refused when
that image is not at a batch boundary of the new size); and the sum of the epoch's generator
loss reads is kept, so the plateau policy observes what an uninterrupted run observes.

Checkpoints and samples stop the loop only for their copy to host memory: the files are written
by a ``BackgroundWriter`` thread while the next steps run. At most one save is in flight (the
next save first waits for the previous one); a write's error ends training at the next save,
sample or the end, with the same one-line message and exit code 1 as a write on this thread;
every way out of ``fit`` (the end, a signal, a non-finite stop, an error, a data loader worker
that died) first lets the writer finish, so the last good checkpoint is complete on disk. A
sample or page refresh (PNGs, loss plot, index.html) that fails is one warning line: it neither
stops training nor holds back a checkpoint.

Under torchrun every rank reads the losses at the same steps and takes their mean over all
ranks, so the loss log, the plateau policy's epoch metric and its lr cut are the same on every
rank (each rank deciding on its own loss made their lrs, then their weights, drift apart).
The same all-reduce carries each rank's stop and checkpoint requests (``StopRequests``'
``shared``), so a signal to any rank stops or saves every rank after the same step.
"""
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict
from functools import partial

import numpy as np
import torch

from fastp2p.command_errors import error_line, rank_prefix
from fastp2p.data.loader import LoaderWorkersFailed
from fastp2p.train.background_writer import BackgroundWriter, host_copy
from fastp2p.train.checkpoints import (CheckpointWriteError, describe_os_error, snapshot,
                                       what_to_fix)
from fastp2p.train.distributed import average_over_processes, is_peer_process_end
from fastp2p.train.loader_failures import (is_loader_worker_death, loader_worker_death,
                                           loader_workers_failed)
from fastp2p.train.memory_errors import first_line, is_out_of_memory
from fastp2p.train.position import Progress, epoch_reached
from fastp2p.train.progress import TimeLeftEstimate, time_left
from fastp2p.train.report_names import LOSS_LOG
from fastp2p.train.sample_images import TRIPLET
from fastp2p.train.stage_times import StageTimes
from fastp2p.train.stop_requests import StopRequests, StopWhileWaiting, TrainingStopped
from fastp2p.train.train_state_check import train_state_problem
from fastp2p.train.training_page import STAGED_RECORD

EXIT_OK, EXIT_FAILED = 0, 1


_GOES_ON = "training and its checkpoints go on (said once per kind of error)"
_NOT_WRITTEN = "warning: {what} in {path} was not written ({reason}); " + _GOES_ON
_SAMPLES_NOT_SET_ASIDE = (
    "warning: {path}/web/images: the earlier run's sample images not yet moved aside stay there, "
    "and this run's are kept staged as .staged-*, until a save moves them ({reason}); "
    + _GOES_ON)


class ResumeError(ValueError):
    """The saved position cannot be resumed with this run's options (exit code 2)."""


def _crossed(before: int, after: int, every: int) -> bool:
    return every > 0 and before // every != after // every


class Trainer:
    """Runs epochs of ``engine`` steps over ``loader``; rank 0 writes checkpoints and reports.

    ``checkpoints``: a CheckpointFolder; ``say``: prints a line (tqdm-safe) on the main
    process; ``say_error``: the same for a line that reports an error, a warning or a stop (on
    stderr, where a job's log of errors looks, while progress stays on ``say``); ``times``: a
    StageTimes that the loop's stages are timed into; ``replaced_run``: the checkpoint sets of
    the run that --overwrite replaces (``CheckpointFolder.saved_sets()``), removed once this
    run's first save is on disk, so a run that saves nothing leaves them as they were. It
    reports nowhere until ``report_to`` is called.
    """

    def __init__(self, args, engine, netG, netD, schedule, checkpoints, *, is_main=True,
                 world_size=1, say=print, say_error=None, times=None, replaced_run=None):
        self.args, self.engine, self.netG, self.netD = args, engine, netG, netD
        self.schedule, self.checkpoints = schedule, checkpoints
        self.is_main, self.world_size = is_main, world_size
        self.say = say
        self.say_error = say_error or (lambda line: print(line, file=sys.stderr, flush=True))
        self.page = self.loss_log = None
        self.trackers = []
        self.times = times if times is not None else StageTimes()
        # As the reference's loop: epochs epoch_count .. n_epochs + n_epochs_decay.
        self.last_epoch = args.n_epochs + args.n_epochs_decay
        self.progress = Progress(epoch=args.epoch_count, epoch_batches=0, images=0,
                                 epoch_images=0)
        self.sampled_at = None  # engine step of the newest sample image
        self.epoch_steps = 0    # the loader's batches per epoch (for the time-left estimate)
        self.time_left_estimate = TimeLeftEstimate()
        self.steps_run = 0      # steps taken by this process (not counting resumed ones)
        self._resumed_rng = None
        self.writer = BackgroundWriter(warn=self.say_error)
        self.replaced_run = replaced_run or None
        # until this run's first save is on disk, the sets there are the replaced run's
        self.replacing = self.replaced_run is not None
        self._first_save_jobs = []   # after_first_save's
        self._resumed_staged_samples = None  # the resumed state's STAGED_RECORD
        self._report_warnings = set()  # kinds of report errors said (writer thread)
        self._leaving = False  # fit is ending: a report that fails says nothing
        self._stops = None  # fit's StopRequests

    def report_to(self, page=None, loss_log=None, trackers=()) -> None:
        """Where the loop reports: ``page`` / ``loss_log``: TrainingPage / LossLog on the main
        process, None elsewhere (``page`` also None with --no_html); ``trackers``: TensorBoard /
        W&B (fastp2p.train.trackers) that get the losses and samples too. Given apart from the
        constructor because opening them writes into the run's folder, which a run does only
        once ``resume`` has accepted its state."""
        self.page, self.loss_log, self.trackers = page, loss_log, list(trackers)

    def after_first_save(self, job) -> None:
        """Run ``job(step)`` on the writer thread once this run's first save, of ``step``, is
        on disk (rank 0's); never where the run saves nothing. Its error ends training as a
        failed save's does."""
        self._first_save_jobs.append(job)

    # ---- state ------------------------------------------------------------------------------
    def train_state(self) -> dict:
        """Tensors and plain containers only, so the file loads with weights_only=True."""
        version, keys, gaussian = random.getstate()
        kind, numpy_keys, position, has_gauss, cached = np.random.get_state()
        return {"engine": self.engine.state_dict(), "schedule": self.schedule.state_dict(),
                "progress": asdict(self.progress),
                "python_rng": {"version": version, "keys": list(keys), "gaussian": gaussian},
                "numpy_rng": {"kind": kind, "keys": torch.from_numpy(numpy_keys.astype(np.int64)),
                              "position": int(position), "has_gauss": int(has_gauss),
                              "cached_gaussian": float(cached)}}

    def resume(self, state: dict, loader=None) -> None:
        """Continue from ``state`` (``train_state()`` of the interrupted run); with ``loader``
        (this run's), the position in the epoch is taken in images, so another batch size or
        number of processes resumes at the same image; raises ResumeError when it cannot.
        ``state`` is one ``CheckpointFolder.load_train_state`` checked; what can still fail (the
        position with this run's sizes, an older state's lr schedule with this --epoch_count, the
        optimizers with these networks) is tried before anything else of this trainer or the
        process's RNGs is changed; a state without the structure ``train_state()`` writes
        (crafted, with its manifest recomputed) is refused with a ValueError before anything is
        changed."""
        problem = train_state_problem(state)
        if problem:
            raise ValueError(f"not a fastp2p training state ({problem})")
        progress = Progress(**state["progress"])
        if progress.epoch_images is None:  # an older fastp2p's state: as it resumed
            # (same sizes), with the images counted so that the loop can add to them
            progress.epoch_images = (progress.epoch_batches * self.args.batch_size
                                     * self.world_size)
        elif loader is not None:
            progress.epoch_batches = self._batches_done(loader, progress)
            # all its batches done: as complete as a state with epoch_complete says, for an
            # older state too (its images reached the dataset's length), so the resume's lines
            # (epoch_reached) count that epoch as done, as this loop does
            progress.epoch_complete = progress.epoch_batches >= len(loader)
        # the schedule's refusal first, its loading after the engine's, which can still refuse
        schedule_problem = self.schedule.state_problem(state["schedule"], epoch=progress.epoch)
        if schedule_problem:
            raise ValueError(schedule_problem)
        self.engine.load_state_dict(state["engine"])
        self.schedule.load_state_dict(state["schedule"], epoch=progress.epoch)
        python_rng, numpy_rng = state["python_rng"], state["numpy_rng"]
        random.setstate((python_rng["version"], tuple(python_rng["keys"]),
                         python_rng["gaussian"]))
        np.random.set_state((numpy_rng["kind"], numpy_rng["keys"].numpy().astype(np.uint32),
                             numpy_rng["position"], numpy_rng["has_gauss"],
                             numpy_rng["cached_gaussian"]))
        self.progress = progress
        self._resumed_staged_samples = state.get(STAGED_RECORD)
        # Starting the epoch's data iterator draws a seed from the global RNG, which the
        # interrupted run did before it saved: restore the saved state once more after that.
        self._resumed_rng = state["engine"]["rng"]

    def _batches_done(self, loader, saved: Progress) -> int:
        """The ``saved`` epoch's done images in ``loader``'s batches (this run's batch size and
        processes). Every rank takes every world_size-th pair of one order, so the first N
        batches of any batch size and world size cover the same first images."""
        per_batch = self.args.batch_size * self.world_size
        # the epoch's batches were all done (a state without epoch_complete: its images reached
        # the dataset's length, which a drop_last epoch's do not)
        if saved.epoch_complete or saved.epoch_images >= len(loader.dataset):
            return len(loader)
        if saved.epoch_images % per_batch:
            raise ResumeError(
                f"cannot resume epoch {saved.epoch} at its image {saved.epoch_images} (saved at "
                f"--batch_size {saved.batch_size} x {saved.world_size} process(es)) with "
                f"--batch_size {self.args.batch_size} x {self.world_size} process(es): "
                f"{saved.epoch_images} is not a multiple of {per_batch}; resume with the saved "
                "sizes, or with sizes whose product divides it")
        return saved.epoch_images // per_batch

    def pairs_changed_note(self, pairs: int) -> str | None:
        """After ``resume``: a line saying so when the epoch it resumes in the middle of was
        trained on another number of pairs than this run's ``pairs`` (a dataset re-packed or
        changed since); None otherwise, or when the state does not record the count."""
        saved = self.progress
        epoch, ended = epoch_reached(saved.epoch, saved.epoch_batches, saved.epoch_complete)
        if saved.dataset_pairs in (None, pairs) or ended:
            return None
        return (f"--continue_train: epoch {epoch} was begun on {saved.dataset_pairs} "
                f"pairs and the dataset now holds {pairs}: its order is drawn from the pair "
                "count, so the rest of this epoch may repeat pairs it trained on and skip others "
                "(later epochs take each pair once); to finish it as begun, resume with the "
                f"dataset as it was ({saved.dataset_pairs} pairs)")

    def total_batch_changed_note(self) -> str | None:
        """After ``resume``: a line saying so when the state was saved by another number of
        processes and the images of a step (--batch_size x processes, which each Adam step and
        the lr act on) change with it; None otherwise (a --batch_size change alone is said
        with the other options changed), or when the state does not record them."""
        saved, batch_size = self.progress, self.args.batch_size
        # an older state may record the processes and not the batch size
        if saved.world_size in (None, self.world_size) or saved.batch_size is None:
            return None
        before, now = saved.batch_size * saved.world_size, batch_size * self.world_size
        if before == now:
            return None
        return (f"--continue_train: the run trained on {saved.world_size} process(es) and this "
                f"one on {self.world_size}: a step's batch goes from {saved.batch_size} x "
                f"{saved.world_size} = {before} to {batch_size} x {self.world_size} = {now} "
                "images (the lr stays as scheduled)")

    def save(self, labels, epoch=None) -> None:
        """Checkpoint under ``labels`` unless the weights went non-finite (keep the good one):
        a host snapshot now, the files on the writer thread. ``epoch``: that of the last step,
        where the progress has moved on to the next (an epoch-end save); the stop names it."""
        self._check_finite(weights=True, epoch=epoch)
        if self.is_main:
            self.writer.wait()   # one save in flight, and one snapshot in memory
            files, step = snapshot(self.netG, self.netD, self.train_state()), self.engine.steps
            replaced, self.replaced_run = self.replaced_run, None
            set_aside = self._set_aside_job()
            discarded_reports = self._discarded_reports_job()
            first_save_jobs, self._first_save_jobs = self._first_save_jobs, []

            def write():
                if set_aside is not None:
                    set_aside()
                self._record_staged_samples(files["state"])
                self.checkpoints.write(labels, files, step, replacing=self.replacing)
                self.replacing = False
                if replaced is not None:
                    self._remove_replaced_run(replaced, labels)
                if discarded_reports is not None:
                    discarded_reports()
                for job in first_save_jobs:
                    job(step)
            self.writer.submit(write)

    def _set_aside_job(self):
        """While the folder's loss log or samples wait to be set aside (``set_aside_before_save``
        of LossLog and TrainingPage): the job that does it, to run on the writer thread before
        the save; None otherwise. Each that fails is said and tried again at the next save."""
        loss_log, page = self.loss_log, self.page
        jobs = []
        moves_samples = page is not None and page.waiting_before_save
        set_aside_samples = partial(self._reporting, what="the samples' set-aside",
                                    warning=_SAMPLES_NOT_SET_ASIDE)
        if moves_samples:   # their images.N/ marked first, so a kill leaves the log's N there
            jobs.append(set_aside_samples(page.claim_before_save))
        if loss_log is not None and loss_log.holding:
            jobs.append(self._reporting(loss_log.set_aside_before_save, LOSS_LOG))
        if moves_samples:
            plotted = loss_log.frozen() if loss_log is not None else None
            jobs.append(set_aside_samples(page.set_aside_before_save))
            # it listed this run's samples by their staged names
            jobs.append(self._reporting(lambda: page.refresh(plotted)))

        def set_aside():
            for job in jobs:
                job()
        return set_aside if jobs else None

    def _record_staged_samples(self, state: dict) -> None:
        """The page's staged samples recorded in the training state about to be written
        (``TrainingPage.staged_record``; with no page, --no_html, the resumed state's record is
        carried on): they are the saved run's, which the next --continue_train keeps."""
        record = (self.page.staged_record() if self.page is not None
                  else self._resumed_staged_samples)
        if record is not None:
            state[STAGED_RECORD] = record

    def _discarded_reports_job(self):
        """While the loss rows and samples of the run a resume discards are still on disk
        (until this run's first save is), or staged samples wait to be renamed into place
        (``TrainingPage.waiting_after_save``): the job that drops or renames them (and
        refreshes the page), to run once the save is on disk, on the writer thread (which
        writes this run's samples, so none is written meanwhile); None otherwise."""
        page, loss_log = self.page, self.loss_log
        held_rows = loss_log is not None and loss_log.holding
        held_samples = page is not None and page.waiting_after_save
        if not (held_rows or held_samples):
            return None
        plotted = loss_log.frozen() if loss_log is not None else None
        # said as the loss log's where it fails, and the page's samples dropped all the same
        discard_rows = self._reporting(loss_log.discard_held, LOSS_LOG) if held_rows else None

        def discard():
            if discard_rows is not None:
                discard_rows()
            if page is not None:
                page.delete_discarded_samples()
                page.refresh(plotted)
        return self._reporting(discard)

    def _remove_replaced_run(self, replaced: dict, written) -> None:
        """After this run's first save: remove the replaced run's sets (those under a label
        just written hold this run's files now) and say how many there were."""
        removed = sorted(label for label in replaced if label not in written)
        rewritten = sorted(label for label in replaced if label in written)
        self.checkpoints.remove_sets({label: replaced[label] for label in removed})
        # the sets by their labels, quoted: an epoch's label is a number ("2 removed")
        gone = [f"{_quoted(removed)} removed"] if removed else []
        gone += [f"{_quoted(rewritten)} replaced by this run's first save"] if rewritten else []
        self.say(f"--overwrite: the previous run's {len(replaced)} checkpoint set(s) in "
                 f"{self.checkpoints.path} are gone: {'; '.join(gone)}")

    def _check_finite(self, weights=False, epoch=None) -> None:
        """Stop if a loss (or, with ``weights``, a parameter, buffer or optimizer state) is
        NaN or Inf, before anything is saved. ``epoch``: the one to name, where it is not the
        progress's (``save``)."""
        bad_step = self.engine.first_nonfinite_step()
        if bad_step:
            what = f"a loss became NaN or Inf at step {bad_step}"
        else:
            bad_tensor = self.engine.first_nonfinite_tensor() if weights else None
            if bad_tensor is None:
                return
            what = f"{bad_tensor} holds NaN or Inf at step {self.engine.steps}"
        kept = self._last_good_checkpoint()
        hint = "" if self.args.precision == "fp32" else ", or try --precision fp32"
        epoch = self.progress.epoch if epoch is None else epoch
        raise TrainingStopped(f"{what} (epoch {epoch}); training stopped and "
                              f"{kept}. Lower --lr (or --lambda_L1) or check the data{hint}",
                              EXIT_FAILED)

    def _last_good_checkpoint(self) -> str:
        """Lets a save in flight land (it is of good weights), then names what is on disk."""
        return self._kept(self._latest_manifest())

    def write_failure(self, err: OSError) -> str:
        """What a failed write of the run's own files (its options file, loss log) did not
        touch, and what to do: the path and error, the checkpoint kept, the way to go on."""
        latest = self._latest_manifest()
        return (f"{describe_os_error(err)}; {self._kept(latest)}. {what_to_fix(err)}, then "
                f"{self._run_again(latest)}")

    def _kept(self, latest: dict | None) -> str:
        """What is on disk, from the latest set's manifest (``_latest_manifest``). Rank 0 alone
        says it: another rank does not know (which sets are the run that --overwrite replaces,
        or, with a checkpoint folder local to each node, what rank 0 wrote)."""
        if not self.is_main:
            return "rank 0's line says which checkpoint is kept"
        if latest is not None:
            return (f"the last good checkpoint {self.checkpoints.path}/latest_* (step "
                    f"{latest['step']}) is unchanged")
        if self.replacing:
            return (f"no checkpoint of this run exists yet (those in {self.checkpoints.path} "
                    "are the run --overwrite replaces)")
        return "no checkpoint was written"

    def _latest_manifest(self) -> dict | None:
        """Lets a save in flight land (it is of good weights), then reads the latest set's
        manifest (None: no checkpoint of this run was written; the latest set of the run that
        --overwrite replaces is not this run's to resume)."""
        self.writer.wait()
        return None if self.replacing else self.checkpoints.manifest("latest")

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self, loader, progress_bar=None) -> int:
        """Train to the last epoch; returns the exit code (0, 1 on failure, 128+signal)."""
        with StopRequests(checkpoint_requests=True, shared=self.world_size > 1) as stops:
            self._stops = stops
            try:
                while self.progress.epoch <= self.last_epoch:
                    self._run_epoch_or_stop(loader, stops, progress_bar)
                    # under torchrun, a stop agreed at the epoch-end loss read (which the loop's
                    # check after each step comes too early to see): latest_* was just saved
                    stop = stops.stop_request()
                    if stop is not None:
                        raise self._stopped(stop)
                self.writer.wait()
                # the run is complete and saved: a stop during its end report or the process's
                # exit is ignored, as a stopped run's (its default action gave 143, a stop's code)
                stops.hold()
            except TrainingStopped as stop:
                if stop.exit_code == EXIT_FAILED:  # a failure (non-finite values): an error line
                    self._say_on_every_rank(error_line("train", stop))
                else:  # a stop, said where it was saved
                    self.say_error(str(stop))
                return stop.exit_code
            except CheckpointWriteError as err:
                self._say_on_every_rank(error_line("train", err))
                return EXIT_FAILED
            except LoaderWorkersFailed as err:  # a limit reached: no write failed
                latest = self._latest_manifest()
                failed = loader_workers_failed(err, self._run_again(latest))
                line = f"{failed}; {self._kept(latest)}"
                self._say_on_every_rank(error_line("train", line))
                return EXIT_FAILED
            except OSError as err:  # the loss log: the checkpoints are untouched
                self._say_on_every_rank(error_line("train", self.write_failure(err)))
                return EXIT_FAILED
            except RuntimeError as err:
                failure = self._runtime_failure(err)
                if failure is None:
                    raise
                self._say_on_every_rank(error_line("train", failure))
                return EXIT_FAILED
            finally:
                self._leaving = True   # the jobs left run as the run ends: no "goes on" line
                self.writer.close()
        return EXIT_OK

    def _runtime_failure(self, err: RuntimeError) -> str | None:
        """What ended training, for the RuntimeErrors said in one line: out of memory, a dead
        data loader worker, another process of the torchrun job ended; None for any other (a
        traceback: a fault to report)."""
        if is_out_of_memory(err):  # the weights in memory may be half-stepped: not saved
            return self._out_of_memory(err)
        if is_peer_process_end(err):  # its own message says why; this rank's would be noise
            return (f"another process of this torchrun job ended (see its message above), so "
                    f"rank {_this_rank()} stopped too; {self._last_good_checkpoint()}")
        if is_loader_worker_death(err):  # killed mid-step, maybe: the weights are not saved
            latest = self._latest_manifest()
            death = loader_worker_death(err, self._run_again(latest))
            return f"{death}; {self._kept(latest)}"
        return None

    def _out_of_memory(self, err: RuntimeError) -> str:
        """What ran out, what to lower (the networks fit: check_networks_fit_memory passed, so
        the batch's activations are what the step could not hold) and what is on disk."""
        args = self.args
        latest = self._latest_manifest()  # read once: for what to do, and for what is kept
        return (f"out of memory at step {self.engine.steps + 1}, --batch_size "
                f"{args.batch_size} ({first_line(err)}); lower --batch_size (or --crop_size, "
                f"--ngf, --ndf), then {self._run_again(latest)}; {self._kept(latest)}")

    def _run_again(self, latest: dict | None) -> str:
        """How to go on after a failure, from the latest set's manifest (``_latest_manifest``):
        --continue_train only where a checkpoint was written (else it has nothing to resume),
        --overwrite where the folder still holds the run it replaces."""
        if latest is not None:
            return "resume with --continue_train"
        return "run it again" + (" with --overwrite" if self.replacing else "")

    def _say_on_every_rank(self, line: str) -> None:
        """An error line of ``fit``: ``say_error`` on the main process; on the others (whose
        ``say_error`` prints nothing: a stop is the main process's to say, as it saves) to
        stderr with the rank, so that the rank that failed tells why (the others see only a
        peer that ended)."""
        if self.is_main:
            self.say_error(line)
        else:
            print(rank_prefix() + line, file=sys.stderr, flush=True)

    def _run_epoch_or_stop(self, loader, stops, progress_bar) -> None:
        """``_run_epoch``, with a stop request that came while it waited for a batch
        (``StopRequests.while_waiting``) taken as one after its last step: latest_* saved
        as that step left it (an epoch's first wait saves again what its start saved)."""
        try:
            self._run_epoch(loader, stops, progress_bar)
        except StopWhileWaiting as stop:
            raise self._stopped(stop.signal_number, ["latest"]) from None

    def _run_epoch(self, loader, stops, progress_bar) -> None:
        args, engine, progress = self.args, self.engine, self.progress
        engine.set_lr(self.schedule.lr_for_epoch(progress.epoch))
        skip = progress.epoch_batches
        loader.set_epoch(progress.epoch, start_batch=skip)
        self.epoch_steps = len(loader)
        progress.batch_size, progress.world_size = args.batch_size, self.world_size
        progress.dataset_pairs = len(loader.dataset)
        times, bar = self.times, None
        try:  # from the bar on: starting the loader can fail too, and the bar must close then
            if progress_bar is not None:
                bar = progress_bar(total=len(loader), initial=skip,
                                   desc=f"epoch {progress.epoch}/{self.last_epoch}")
            window_start, window_images = time.perf_counter(), 0
            # the first epoch this process runs holds its one-off start (warm-up, CUDA-graph
            # capture, compiles): no measure of the others
            self.time_left_estimate.epoch_started(window_start, self.steps_run,
                                                  whole=skip == 0 and self.steps_run > 0)
            by_iter = []  # the last step's --save_by_iter label, for the epoch end's save
            # started here: it draws from the global RNG
            batches = times.waiting(stops.while_waiting(iter(loader)))
            if self._resumed_rng is not None:
                engine.load_rng_state(self._resumed_rng)
                self._resumed_rng = None
            for index, batch in enumerate(batches, start=skip):
                with times.stage("step"):
                    engine.step(batch["A"], batch["B"])
                times.step_done(batch["A"].shape[0])
                self.steps_run += 1
                batch_images = batch["A"].shape[0] * self.world_size
                before, progress.images = progress.images, progress.images + batch_images
                progress.epoch_batches = index + 1
                progress.epoch_images += batch_images
                progress.epoch_complete = index + 1 == len(loader)
                window_images += batch_images
                if bar is not None:
                    bar.update(1)
                if engine.steps % args.log_every == 0:
                    with times.stage("log"):
                        self._log(window_start, window_images, bar)
                    window_start, window_images = time.perf_counter(), 0
                if (self.page is not None or self.trackers) \
                        and _crossed(before, progress.images, args.display_freq):
                    with times.stage("sample"):
                        self._add_sample()
                if progress.epoch_complete:
                    # before any save of the last step: a resume from that save runs no step, so
                    # it could not draw the final sample itself (nor after a SIGKILL)
                    self._add_final_sample()
                crossing = _crossed(before, progress.images, args.save_latest_freq)
                # --save_by_iter (the reference's): also keep a crossing's point, named by its
                # images
                by_iter = [f"iter_{progress.images}"] if crossing and args.save_by_iter else []
                stop = stops.stop_request()   # under torchrun, as of the last loss read
                if stop is not None:  # its save is this step's crossing's too
                    raise self._stopped(stop, ["latest"] + by_iter)
                # latest_* once a step: the last step's crossing is saved by the epoch's end,
                # whose record (the epoch done) makes a resume start the next epoch
                if crossing and not progress.epoch_complete:
                    with times.stage("checkpoint"):
                        self.save(["latest"] + by_iter)
                requested = stops.take_checkpoint_request()
                if requested is not None:   # this step's latest_* saved now, or by the epoch end
                    self._save_on_request(requested, saved=crossing or progress.epoch_complete)
            times.epoch_end()
        finally:  # on every way out: a stop's or an error's line then follows the bar
            if bar is not None:  # (tqdm.write would redraw an open bar below it)
                bar.close()
        # Timed as the steps' stages are (the final sample times its own drawing): the next
        # epoch's first step closes the window after this work (the last epoch's end falls
        # outside it).
        self._add_final_sample()
        if engine.steps_since_read:
            with times.stage("log"):
                self._log(window_start, window_images, None)
        self._check_finite()
        self.schedule.observe(progress.epoch_loss_sum / progress.epoch_loss_reads
                              if progress.epoch_loss_reads else math.nan)
        finished = progress.epoch
        progress.epoch, progress.epoch_batches, progress.epoch_images = finished + 1, 0, 0
        progress.epoch_complete = False
        progress.epoch_loss_sum, progress.epoch_loss_reads = 0.0, 0
        labels = ["latest"] + by_iter + ([str(finished)]
                                         if finished % self.args.save_epoch_freq == 0
                                         or finished == self.last_epoch else [])
        with times.stage("checkpoint"):
            self.save(labels, epoch=finished)
        if self.page is not None:
            page, loss_log = self.page, self.loss_log.frozen()
            self._submit_report(lambda: page.refresh(loss_log))
        self.say(f"epoch {finished} done: {progress.images} images, lr {engine.lr:.3g}, "
                 f"saving {' and '.join(f'{label}_*' for label in labels)}")

    def _stopped(self, stop: int, labels=None) -> TrainingStopped:
        """The stop for signal number ``stop``, once this step's latest_* is on disk: saved
        under ``labels`` here, or (None) by the epoch's end just before. From here on a second
        request is only recorded: it cannot cut the save short (the run's end waits for the
        writer all the same), so its "stopped at once, without saving" was untrue."""
        self._stops.hold()
        if labels is not None:
            self.save(labels)
        self.writer.wait()
        return TrainingStopped(
            f"{signal.Signals(stop).name} received: saved {self.checkpoints.path}/latest_* at "
            f"step {self.engine.steps}; resume with --continue_train", 128 + stop)

    def _save_on_request(self, signal_name: str, saved: bool) -> None:
        """A checkpoint request (SIGUSR1 / SIGUSR2, a scheduler's warning before its time limit):
        latest_* now, and training goes on (the SIGTERM that follows at the limit stops it).
        ``saved``: this step's latest_* is saved already (a --save_latest_freq crossing) or will
        be by the epoch's end (its last step), so it is not saved twice."""
        if not saved:
            with self.times.stage("checkpoint"):
                self.save(["latest"])
        self.say(f"{signal_name} received: saving {self.checkpoints.path}/latest_* at step "
                 f"{self.engine.steps}; training goes on")

    def _add_final_sample(self) -> None:
        """The final model's sample, whatever --display_freq: once the last epoch's steps are
        done, unless that step has its sample already."""
        if (self.page is not None or self.trackers) and self.progress.epoch == self.last_epoch \
                and self.sampled_at != self.engine.steps:
            with self.times.stage("sample"):
                self._add_sample()

    def _add_sample(self) -> None:
        """Write the latest step's (real_A, fake_B, real_B) to the page and the trackers (only
        once a step has run in this process: a resumed, finished run has none): the first image
        of each, copied to the host here, drawn and written (PNGs, loss plot, page) on the writer
        thread. A step whose losses are NaN or Inf stops training here, before its output (NaN
        cast to uint8: black) is drawn anywhere; the copy to the host syncs anyway."""
        if self.steps_run == 0:
            return
        self._check_finite()
        triplet = host_copy(tuple(batch[:1] for batch in self.engine.last_batch()))
        if self.page is not None:
            page, loss_log = self.page, self.loss_log.frozen()
            epoch, step = self.progress.epoch, self.engine.steps

            def write_sample():
                page.add_sample(epoch, step, triplet)
                page.refresh(loss_log)
            self._submit_report(write_sample)
        for tracker in self.trackers:
            tracker.log_images(self.engine.steps,
                               {label: batch[0] for label, batch in zip(TRIPLET, triplet)})
        self.sampled_at = self.engine.steps

    def _submit_report(self, job) -> None:
        """``job`` (samples, loss plot, page) on the writer thread (``_reporting``)."""
        self.writer.submit(self._reporting(job), in_flight=3)

    def _reporting(self, job, what="a sample image or the training page", warning=None):
        """``job`` (samples, loss plot, page; or the loss log's rewrite at a save, tried again
        at the next) as a job that, if it fails, says one warning line naming ``what`` it
        writes in the run folder (or ``warning``, formatted with ``reason``; once per kind of
        error and ``what``) and returns: the reports are views of the run, remade at the next
        refresh, and must not stop training or hold back a checkpoint. Said only while the run
        goes on: a job that fails once the run is ending (a save before it failed, or ``fit``
        is leaving) says nothing, as its line would say training goes on after the error line
        that ended it."""
        def report():
            try:
                job()
            except Exception as err:  # noqa: BLE001 - whatever it is, it costs only a view
                kind = (what, type(err), getattr(err, "errno", None))
                if kind in self._report_warnings or self.writer.failed or self._leaving:
                    return
                self._report_warnings.add(kind)
                # the message's first line that holds something: matplotlib's parse errors
                # open with a newline
                message = next((line.strip() for line in str(err).splitlines() if line.strip()),
                               "")
                reason = (describe_os_error(err).splitlines()[0] if isinstance(err, OSError)
                          else f"{type(err).__name__}: {message}" if message
                          else type(err).__name__)
                self.say_error((warning or _NOT_WRITTEN).format(
                    what=what, path=self.checkpoints.path, reason=reason))
        return report

    def _log(self, window_start: float, window_images: int, bar) -> None:
        """Read the losses since the last read (under torchrun their mean over the ranks, which
        all read at this step): to the epoch's generator loss sum (the plateau policy's
        metric), the loss log, the trackers and the progress bar, with the images/s of the
        ``window_images`` since ``window_start``."""
        steps = self.engine.steps_since_read
        losses = self.engine.read_losses()
        # timed after the read, which waits for the device: on a GPU the host queues steps far
        # ahead of it, and a window closed before the wait would count queueing, not steps
        images_per_s = window_images / (time.perf_counter() - window_start)
        self._check_finite()
        if self.world_size > 1:
            losses = self._average_over_processes(losses)
        self.progress.epoch_loss_sum += (losses["G_GAN"] + losses["G_L1"]) * steps
        self.progress.epoch_loss_reads += steps
        if self.loss_log is not None:
            self.loss_log.append({"epoch": self.progress.epoch, "step": self.engine.steps,
                                  "images": self.progress.images, "lr": self.engine.lr,
                                  **losses, "images_per_s": round(images_per_s, 2)})
        for tracker in self.trackers:
            tracker.log_scalars(self.engine.steps, {**losses, "lr": self.engine.lr,
                                                    "images_per_s": images_per_s})
        if bar is not None:
            bar.show_read({"img/s": f"{images_per_s:.1f}",
                           "left": self._run_time_left(images_per_s)},
                          {name: f"{value:.3f}" for name, value in losses.items()})

    def _average_over_processes(self, losses: dict) -> dict:
        """``losses``' mean over the torchrun job's ranks, and, in the same all-reduce (no
        collective of its own), the ranks' stop and checkpoint requests, which every rank then
        acts on alike after this step (``StopRequests.agree``)."""
        values = average_over_processes(list(losses.values()) + self._stops.shared_flags(),
                                        self.engine.device)
        self._stops.agree(values[len(losses):])
        return dict(zip(losses, values[:len(losses)]))

    def _run_time_left(self, images_per_s: float) -> str:
        """The run's time left (``TimeLeftEstimate``'s; ``images_per_s``: the latest read's
        speed) for this epoch's steps left and the later epochs' (each as many steps as this
        one)."""
        progress = self.progress
        steps_left = (self.epoch_steps - progress.epoch_batches
                      + (self.last_epoch - progress.epoch) * self.epoch_steps)
        steps_per_s = images_per_s / (self.args.batch_size * self.world_size)
        seconds = self.time_left_estimate.seconds_left(steps_left, steps_per_s)
        return "?" if seconds is None else time_left(seconds)


def _this_rank() -> str:
    """This process's rank as torchrun numbers it."""
    return os.environ.get("RANK", "?")


def _quoted(labels) -> str:
    return ", ".join(f"'{label}'" for label in labels)
