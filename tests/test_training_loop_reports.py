"""What the training loop reports, driven directly (a Trainer over a list of random batches, a
stand-in tracker and progress bar, no CLI): the losses read every --log-every steps with the
images/s of the steps since the last read, the progress bar, the samples, and the position and
checkpoints each step leaves."""
import os
import signal

import pytest

from fastp2p.train import trainer as trainer_module
from helpers.train_helpers import random_batches, tiny_networks
from helpers.trainer_stand_ins import Clock, ListLoader, stand_in_trainer


class Tracker:
    """A TensorBoard / W&B stand-in: what it was given, by step."""

    def __init__(self):
        self.scalars, self.images = [], []

    def log_scalars(self, step, values):
        self.scalars.append((step, dict(values)))

    def log_images(self, step, images):
        self.images.append((step, sorted(images)))


class Bar:
    """A tqdm stand-in: the bars made, and what each was given."""
    made = []

    def __init__(self, total, initial, desc):
        self.total, self.n, self.desc, self.postfixes, self.closed = total, initial, desc, [], False
        Bar.made.append(self)

    def update(self, count):
        self.n += count

    def show_read(self, speed, losses):
        self.postfixes.append({**speed, **losses})

    def close(self):
        self.closed = True


class LossLog:
    """A LossLog stand-in: the rows appended."""
    holding = False   # not a resume: no rows of a discarded run held

    def __init__(self):
        self.rows = []

    def append(self, row):
        self.rows.append(row)

    def frozen(self):
        return list(self.rows)


class FailingPage:
    """A TrainingPage whose every write fails with ``error``."""
    discarded_after = None   # not a resume: no samples of a discarded run to delete
    waiting_before_save = False   # nor of a run before networks without a training state
    waiting_after_save = False    # nor staged samples to rename into place

    def staged_record(self):
        return None   # nothing staged

    def __init__(self, error):
        self.error, self.calls = error, 0

    def add_sample(self, epoch, step, triplet):
        self.calls += 1
        raise self.error

    def refresh(self, loss_log):
        self.calls += 1
        raise self.error


def _trainer(tmp_path, **options):
    trainer, lines = stand_in_trainer(tmp_path, *tiny_networks(), **options)
    tracker = Tracker()
    trainer.report_to(trackers=[tracker])
    return trainer, tracker, lines


def test_losses_are_read_every_log_every_steps_and_at_each_epoch_end(tmp_path):
    trainer, tracker, _ = _trainer(tmp_path, log_every=2)
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    # 3 steps per epoch: read at steps 2 and 4, and what is left at each epoch's end (3, 6)
    assert [step for step, _ in tracker.scalars] == [2, 3, 4, 6]
    assert all(values["lr"] == trainer.schedule.lr_for_epoch(1 if step <= 3 else 2)
               for step, values in tracker.scalars)


def test_images_per_second_counts_the_images_since_the_last_read(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "time", Clock(tick=3.0))
    trainer, tracker, _ = _trainer(tmp_path, batch_size=2)
    loss_log = LossLog()
    trainer.report_to(loss_log=loss_log, trackers=[tracker])
    Bar.made = []
    assert trainer.fit(ListLoader(random_batches(3, batch_size=2)), progress_bar=Bar) == 0
    # each read 3 s after the window's start: the step's 2 images, 2/3 images/s
    assert [values["images_per_s"] for _, values in tracker.scalars] == [2 / 3] * 6
    assert [postfix["img/s"] for postfix in Bar.made[0].postfixes] == ["0.7"] * 3
    assert [row["images_per_s"] for row in loss_log.rows] == [0.67] * 6
    # the loss log's rows: the run's images (not the epoch's) at each step, and the epoch
    assert [(row["epoch"], row["step"], row["images"]) for row in loss_log.rows] == [
        (1, 1, 2), (1, 2, 4), (1, 3, 6), (2, 4, 8), (2, 5, 10), (2, 6, 12)]


def test_images_per_second_counts_the_reads_wait_for_the_device(tmp_path, monkeypatch):
    """The read waits for the steps queued on the device (a GPU's host runs ahead of it): that
    wait is the steps' time, so the window closes after it, not before."""
    clock = Clock(tick=3.0)
    monkeypatch.setattr(trainer_module, "time", clock)
    trainer, tracker, _ = _trainer(tmp_path, batch_size=2, n_epochs=1, n_epochs_decay=0)
    read_losses = trainer.engine.read_losses

    def read_after_the_queue_drains():
        clock.now += 9.0
        return read_losses()
    trainer.engine.read_losses = read_after_the_queue_drains
    assert trainer.fit(ListLoader(random_batches(3, batch_size=2))) == 0
    # each read 3 s of queueing and 9 s of waiting after the window's start: 2 images in 12 s
    assert [values["images_per_s"] for _, values in tracker.scalars] == [2 / 12] * 3


def test_the_progress_line_estimates_the_runs_time_left(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "time", Clock(tick=3.0))
    trainer, _, _ = _trainer(tmp_path, batch_size=2)
    Bar.made = []
    assert trainer.fit(ListLoader(random_batches(3, batch_size=2)), progress_bar=Bar) == 0
    # 3 s a step at each read; 2 epochs of 3 steps: after step 1, 2 steps of this epoch and 3
    # of the next; the second goes by the reads too, as the first epoch a process runs holds
    # its one-off start (a GPU's warm-up, capture and compiles), no measure of the others
    assert [[postfix["left"] for postfix in bar.postfixes] for bar in Bar.made] == [
        ["15s", "12s", "9s"], ["6s", "3s", "0s"]]


def test_the_time_left_counts_the_epoch_ends_save_once_an_epoch_has_run(tmp_path, monkeypatch):
    """The epoch end's save (its fsyncs on a busy disk) falls outside every read's speed, which
    alone made "left" short: once a whole epoch after the process's first has run, it counts in
    its share of the time."""
    clock = Clock(tick=3.0)
    monkeypatch.setattr(trainer_module, "time", clock)
    trainer, _, _ = _trainer(tmp_path, n_epochs=3, n_epochs_decay=0)
    save = trainer.save

    def slow_save(labels, **options):
        clock.now += 60.0
        save(labels, **options)
    trainer.save = slow_save
    Bar.made = []
    assert trainer.fit(ListLoader(random_batches(3)), progress_bar=Bar) == 0
    # each epoch from its start to the next's: 21 s of steps and reads, 60 s of its end's save;
    # the first epoch, the process's start, is no measure: the second goes by the read's 3 s a
    # step, the third by the second's 81 s / 3 steps
    assert [bar.postfixes[0]["left"] for bar in Bar.made] == ["24s", "15s", "54s"]


def test_the_progress_bar_of_each_epoch(tmp_path):
    trainer, _, _ = _trainer(tmp_path, n_epochs=2, n_epochs_decay=0)
    Bar.made = []
    assert trainer.fit(ListLoader(random_batches(3)), progress_bar=Bar) == 0
    assert [(bar.desc, bar.total, bar.n, bar.closed) for bar in Bar.made] == [
        ("epoch 1/2", 3, 3, True), ("epoch 2/2", 3, 3, True)]
    assert set(Bar.made[0].postfixes[0]) == {"img/s", "left", "G_GAN", "G_L1", "D_real",
                                             "D_fake"}


def test_a_resumed_epochs_bar_starts_at_the_batches_done(tmp_path):
    trainer, tracker, _ = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0)
    trainer.progress.epoch_batches = trainer.progress.epoch_images = 2   # as a resume sets
    Bar.made = []
    assert trainer.fit(ListLoader(random_batches(3)), progress_bar=Bar) == 0
    assert [(bar.total, bar.n) for bar in Bar.made] == [(3, 3)]
    assert trainer.steps_run == 1 and trainer.progress.images == 2


def test_samples_at_each_display_freq_crossing_and_one_for_the_last_step(tmp_path):
    trainer, tracker, _ = _trainer(tmp_path, display_freq=4)
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    # 2 images a step: 4 and 8 images crossed at steps 2 and 4, 12 at step 6, the last
    assert [step for step, _ in tracker.images] == [2, 4, 6]
    assert tracker.images[0][1] == ["fake_B", "real_A", "real_B"]


def test_the_last_epochs_sample_is_drawn_before_its_last_save(tmp_path):
    trainer, tracker, _ = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0, save_latest_freq=6)
    saved_after = []
    save = trainer.save
    trainer.save = lambda labels, **options: (saved_after.append(len(tracker.images)),
                                              save(labels, **options))
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    assert [step for step, _ in tracker.images] == [3]
    assert saved_after[0] == 1   # the step-3 save (6 images) already has the final sample


def test_save_by_iter_names_the_set_by_its_images(tmp_path):
    trainer, _, lines = _trainer(tmp_path, batch_size=2, n_epochs=1, n_epochs_decay=0,
                                 save_latest_freq=4)
    trainer.args.save_by_iter = True
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    folder = trainer.checkpoints
    assert folder.load_train_state("iter_4")["progress"]["images"] == 4
    assert not folder.file("iter_2", "net_G.pth").exists()
    assert lines[-1] == "epoch 1 done: 6 images, lr 0.0002, saving latest_* and 1_*"


def test_an_epoch_end_saves_its_numbered_set_every_save_epoch_freq_and_at_the_last(tmp_path):
    trainer, _, lines = _trainer(tmp_path, n_epochs=5, n_epochs_decay=0, save_epoch_freq=2)
    assert trainer.fit(ListLoader(random_batches(1))) == 0
    done = [line for line in lines if " done: " in line]
    assert [line.split("saving ")[1] for line in done] == [
        "latest_*", "latest_* and 2_*", "latest_*", "latest_* and 4_*", "latest_* and 5_*"]
    assert [line.split(" done")[0] for line in done] == [f"epoch {e}" for e in range(1, 6)]


def test_the_saved_position_in_the_epoch(tmp_path):
    trainer, _, _ = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0, save_latest_freq=4)
    positions = []
    save = trainer.save
    trainer.save = lambda labels, **options: (positions.append(dict(vars(trainer.progress))),
                                              save(labels, **options))
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    mid, end = positions
    assert (mid["epoch"], mid["epoch_batches"], mid["epoch_images"], mid["images"],
            mid["epoch_complete"]) == (1, 2, 4, 4, False)
    assert (end["epoch"], end["epoch_batches"], end["epoch_images"], end["images"]) == (2, 0, 0, 6)
    assert (mid["batch_size"], mid["world_size"]) == (2, 1)


def test_the_plateau_metric_is_the_epochs_mean_generator_loss_weighted_by_steps(tmp_path):
    trainer, tracker, _ = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0, log_every=2)
    observed = []
    trainer.schedule.observe = observed.append
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    (two, one) = [values["G_GAN"] + values["G_L1"] for _, values in tracker.scalars]
    assert [step for step, _ in tracker.scalars] == [2, 3]   # a read of 2 steps, then of 1
    assert len(observed) == 1
    assert abs(observed[0] - (2 * two + one) / 3) < 1e-9 * abs(observed[0])


def test_a_stop_request_saves_after_the_step_it_came_in_and_says_that_step(tmp_path):
    trainer, _, lines = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0)
    assert trainer.fit(ListLoader(random_batches(3), stop_in_step=1)) == 128 + signal.SIGINT
    folder = trainer.checkpoints
    assert lines[-1] == (f"SIGINT received: saved {folder.path}/latest_* at step 2; resume "
                         "with --continue_train")
    assert folder.manifest("latest")["step"] == 2
    assert folder.load_train_state("latest")["progress"]["epoch_batches"] == 2


def test_the_soft_cpu_time_limit_saves_and_stops_as_sigterm_does(tmp_path):
    """SIGXCPU (`ulimit -t`, PBS pcput, LSF -c: the kernel's warning before its SIGKILL at the
    hard limit) killed the run with no word, the last epoch's save kept (QA limits2 #4); and
    the kernel repeats it each CPU second, which must not stop the save at once."""
    trainer, _, lines = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0)
    # ignored meanwhile (as no run's handler was there, before): a stray one cannot end pytest
    previous = signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    try:
        repeat = trainer.save

        def save_as_the_limit_repeats(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGXCPU)
            repeat(*args, **kwargs)
        trainer.save = save_as_the_limit_repeats
        code = trainer.fit(ListLoader(random_batches(3), stop_in_step=1,
                                      stop_signal=signal.SIGXCPU))
    finally:
        signal.signal(signal.SIGXCPU, previous)
    folder = trainer.checkpoints
    assert code == 128 + signal.SIGXCPU == 152
    assert lines[-1] == (f"SIGXCPU received: saved {folder.path}/latest_* at step 2; resume "
                         "with --continue_train")
    assert folder.manifest("latest")["step"] == 2


def test_a_failing_page_is_one_warning_per_kind_of_error(tmp_path):
    import errno

    trainer, _, lines = _trainer(tmp_path, display_freq=2)
    page = FailingPage(OSError(errno.ENOSPC, "No space left on device"))
    trainer.report_to(page=page, loss_log=LossLog())
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    assert page.calls >= 4      # every sample tried, and each epoch's page refresh
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 1, warnings
    assert f"page in {trainer.checkpoints.path} was not written" in warnings[0]
    assert trainer.checkpoints.manifest("latest")["step"] == 6   # training went on


def test_the_stage_times_count_images_not_steps(tmp_path):
    trainer, _, _ = _trainer(tmp_path, batch_size=2)
    assert trainer.fit(ListLoader(random_batches(3, batch_size=2))) == 0
    # 6 steps of 2 images; the window opens after the first (warm-up) step
    assert (trainer.times.steps, trainer.times.images) == (6, 10)


class LoaderThatCannotStart(ListLoader):
    """A loader whose epoch fails to start (a worker that cannot be spawned, a shard gone)."""

    def __iter__(self):
        raise ValueError("cannot start the loader")


def test_a_loader_that_cannot_start_leaves_no_bar_open(tmp_path):
    """The bar was opened before the try that closes it, and the loader started outside it: a
    later line would draw below a stale bar."""
    trainer, _, _ = _trainer(tmp_path)
    Bar.made = []
    with pytest.raises(ValueError, match="cannot start the loader"):
        trainer.fit(LoaderThatCannotStart(random_batches(2)), progress_bar=Bar)
    assert [bar.closed for bar in Bar.made] == [True]


def test_a_report_failing_after_a_failed_save_says_no_warning(tmp_path, monkeypatch):
    """The epoch's page refresh, queued behind the save that failed and ended the run, said
    "training and its checkpoints go on" after the error line (QA limits2 #3: the disk was
    full for both)."""
    import errno
    import threading

    from fastp2p.train.checkpoints import CheckpointWriteError

    trainer, _, lines = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0)
    saving, queued_behind = threading.Event(), threading.Event()

    def disk_full(*args, **kwargs):
        saving.set()
        queued_behind.wait(60)  # the refresh is queued behind this save before it fails
        raise CheckpointWriteError("could not write the checkpoint: No space left on device")
    monkeypatch.setattr(trainer.checkpoints, "write", disk_full)
    submit, in_flights = trainer.writer.submit, []

    def submitting(job, in_flight=1):
        submit(job, in_flight)
        in_flights.append(in_flight)
        if in_flight > 1 and 1 in in_flights:   # a report, submitted after the save
            queued_behind.set()
    monkeypatch.setattr(trainer.writer, "submit", submitting)

    class FullPage(FailingPage):
        """Full from the save on: the final sample before it is written."""
        def add_sample(self, epoch, step, triplet):
            pass

        def refresh(self, loss_log):
            if saving.is_set():
                super().refresh(loss_log)

    page = FullPage(OSError(errno.ENOSPC, "No space left on device"))
    trainer.report_to(page=page, loss_log=LossLog())
    assert trainer.fit(ListLoader(random_batches(3))) == 1
    assert page.calls == 1      # the epoch's refresh, after the save
    assert lines[-1].startswith("fastp2p train: error: could not write"), lines
    assert not [line for line in lines if line.startswith("warning: ")], lines


def test_a_failing_loss_log_rewrite_is_said_as_the_loss_log(tmp_path, monkeypatch):
    """The held log's rewrite at the first save (a resume from an older epoch) failing was said
    as "a sample image or the training page ... was not written"."""
    import errno

    from fastp2p.train import loss_log as loss_log_module
    from fastp2p.train.report_names import LOSS_LOG

    trainer, _, lines = _trainer(tmp_path, n_epochs=1, n_epochs_decay=0)
    log_path = trainer.checkpoints.path / LOSS_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(",".join(loss_log_module.LOG_FIELDS) + "\n"
                        + ",".join(["9"] * len(loss_log_module.LOG_FIELDS)) + "\n")
    loss_log = loss_log_module.LossLog(log_path, resume_step=0, say=lines.append)
    assert loss_log.holding   # the row of step 9, past the resumed step

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", str(log_path))
    monkeypatch.setattr(loss_log_module, "replace_text", disk_full)
    trainer.report_to(loss_log=loss_log)
    assert trainer.fit(ListLoader(random_batches(3))) == 0
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: loss_log.csv in {trainer.checkpoints.path} was "
                                  "not written"), warnings
