"""One N names one run's kept log and samples, whatever point of a --continue_train set-aside
(networks without a training state) or of a new run's start (in a folder whose run saved no
checkpoint) a kill cuts: loss_log.N.csv and web/images.N/ of one run.
A kill after the log was renamed aside and before the samples were moved left no trace of the
log's N: the next start kept the killed run's new log under the next N and moved the earlier
run's samples under that N too, beside the other run's rows (the earlier run's log alone
under the first)."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastp2p.train.kept_runs import KeptNumber
from fastp2p.train.loss_log import LOG_FIELDS, LossLog
from fastp2p.train.report_names import IMAGES, LOSS_LOG, UNFINISHED_MOVE, WEB
from fastp2p.train.train_command import _open_run_files
from fastp2p.train.trainer import Trainer
from fastp2p.train.training_page import TrainingPage

EARLIER_LOG = "epoch,step\nthe earlier run's row\n"
EARLIER_SAMPLES = {f"epoch002_step000000{step}_real_A.png": b"the earlier run's"
                   for step in (1, 2)}


class _Killed(BaseException):
    """A kill: nothing of the process runs after it."""


def _started(run):
    """What a --continue_train of networks without a training state holds at its first save:
    its page and loss log (one N between them), in a Trainer that runs only the set-aside."""
    kept_number = KeptNumber(run)
    trainer = Trainer.__new__(Trainer)
    trainer.page = TrainingPage(run / WEB, "run", set_aside=True, kept_number=kept_number,
                                say=lambda line: None)
    trainer.loss_log = LossLog(run / LOSS_LOG, set_aside=True, kept_number=kept_number,
                               say=lambda line: None)
    trainer.loss_log.append(dict.fromkeys(LOG_FIELDS, 1))   # this run's first row
    # what _reporting reads: a failure would be said, none is expected
    trainer._report_warnings, trainer._leaving = set(), False
    trainer.writer, trainer.checkpoints = SimpleNamespace(failed=False), SimpleNamespace(path=run)
    trainer.say_error = pytest.fail
    return trainer


def _earlier_runs_folder(tmp_path):
    """A run folder holding an earlier run's loss log and samples, and no training state."""
    run = tmp_path / "tiny"
    (run / WEB / IMAGES).mkdir(parents=True)
    (run / LOSS_LOG).write_text(EARLIER_LOG)
    for name, data in EARLIER_SAMPLES.items():
        (run / WEB / IMAGES / name).write_bytes(data)
    return run


def test_a_kill_between_the_log_and_the_samples_set_aside_keeps_them_under_one_n(
        tmp_path, monkeypatch):
    run = _earlier_runs_folder(tmp_path)
    killed = _started(run)
    with monkeypatch.context() as patch:
        def killed_before_moving(page):
            raise _Killed
        patch.setattr(TrainingPage, "set_aside_before_save", killed_before_moving)
        with pytest.raises(_Killed):
            killed._set_aside_job()()
    assert (run / "loss_log.1.csv").read_text() == EARLIER_LOG   # the log was set aside
    _started(run)._set_aside_job()()   # the next start's first save
    assert (run / "loss_log.1.csv").read_text() == EARLIER_LOG
    assert {path.name: path.read_bytes()
            for path in (run / WEB / "images.1").iterdir()} == EARLIER_SAMPLES
    # the killed run's log, kept alone (its staged samples were deleted as a failed resume's)
    assert (run / "loss_log.2.csv").read_text().splitlines()[1] == ",".join("1" * len(LOG_FIELDS))
    assert sorted(path.name for path in (run / WEB).glob("images*")) == [IMAGES, "images.1"]


def test_a_kill_after_the_samples_failed_to_follow_the_set_aside_log_keeps_them_under_its_n(
        tmp_path, monkeypatch):
    """The log went to loss_log.1.csv and the first sample's rename failed: the page removed its
    empty marked images.1/, and the next start (killed before this run's next save) moved the
    samples into images.2/, beside the killed run's log."""
    import os

    run = _earlier_runs_folder(tmp_path)
    failing = _started(run)
    failing.say_error = lambda line: None   # the samples' warning, expected
    real_rename = os.rename
    with monkeypatch.context() as patch:
        def rename_no_sample(source, target):
            if Path(source).parent.name == IMAGES:
                raise PermissionError(13, "Permission denied", str(source))
            real_rename(source, target)
        patch.setattr(os, "rename", rename_no_sample)
        failing._set_aside_job()()
    assert (run / "loss_log.1.csv").read_text() == EARLIER_LOG   # the log was set aside
    _started(run)._set_aside_job()()   # the next start's first save (this one was killed)
    assert {path.name: path.read_bytes()
            for path in (run / WEB / "images.1").iterdir()} == EARLIER_SAMPLES
    assert sorted(path.name for path in (run / WEB).glob("images*")) == [IMAGES, "images.1"]


def _new_runs_files(run, no_html=False, say=lambda line: None):
    """A new run's start in ``run`` (no training state, no --continue_train): its page, which
    moves the earlier run's samples aside, then its loss log, which keeps the earlier log."""
    args = SimpleNamespace(continue_train=False, no_html=no_html, name="run")
    return _open_run_files(args, SimpleNamespace(path=run), None, (say, say), None, None,
                           on_cpu=True, trains=False)


EARLIER_RUNS_LOG = ",".join(LOG_FIELDS) + "\n" + ",".join("1" * len(LOG_FIELDS)) + "\n"


def _killed_between_a_new_runs_samples_and_log(run, monkeypatch):
    """A run that saved no checkpoint left its log and samples in ``run``; the next new run
    moved the samples into images.1/ and was killed before it kept the log."""
    (run / WEB / IMAGES).mkdir(parents=True)
    (run / LOSS_LOG).write_text(EARLIER_RUNS_LOG)
    for name, data in EARLIER_SAMPLES.items():
        (run / WEB / IMAGES / name).write_bytes(data)
    with monkeypatch.context() as patch:
        def killed_before_keeping_the_log(kept_number, path):
            raise _Killed
        patch.setattr(KeptNumber, "move", killed_before_keeping_the_log)
        with pytest.raises(_Killed):
            _new_runs_files(run)


def test_a_kill_between_a_new_runs_samples_and_log_moves_keeps_them_under_one_n(
        tmp_path, monkeypatch):
    """The page moved the samples into images.1/ and removed its mark before the log was
    kept: the next start kept the log as loss_log.2.csv, beside no samples of its run."""
    run = tmp_path / "tiny"
    earlier_log = EARLIER_RUNS_LOG
    _killed_between_a_new_runs_samples_and_log(run, monkeypatch)
    _new_runs_files(run)
    assert sorted(path.name for path in run.glob("loss_log*")) == ["loss_log.1.csv", LOSS_LOG]
    assert (run / "loss_log.1.csv").read_text() == earlier_log
    assert {path.name: path.read_bytes()
            for path in (run / WEB / "images.1").iterdir()} == EARLIER_SAMPLES
    assert not (run / WEB / "images.1" / UNFINISHED_MOVE).exists()   # its move is done


def test_a_no_html_run_that_keeps_the_log_after_the_samples_move_ends_the_mark(
        tmp_path, monkeypatch):
    """A --no_html run kept the log under the mark's N and, with no page, left the mark: the
    next run with a page said the samples moved earlier were kept a second time."""
    run = tmp_path / "tiny"
    _killed_between_a_new_runs_samples_and_log(run, monkeypatch)
    _new_runs_files(run, no_html=True)
    assert (run / "loss_log.1.csv").read_text() == EARLIER_RUNS_LOG
    assert not (run / WEB / "images.1" / UNFINISHED_MOVE).exists()   # its move is done
    said = []
    _new_runs_files(run, say=said.append)
    assert not any("sample image(s)" in line for line in said)


def test_a_no_html_run_leaves_the_mark_of_a_move_cut_short_to_the_next_page(
        tmp_path, monkeypatch):
    """Samples still in web/images are the mark's to move: the next page's move goes on into
    images.1/, beside the log the --no_html run kept there."""
    run = tmp_path / "tiny"
    _killed_between_a_new_runs_samples_and_log(run, monkeypatch)
    left = next(iter(EARLIER_SAMPLES))   # a kill cut the move short before this one
    (run / WEB / "images.1" / left).rename(run / WEB / IMAGES / left)
    _new_runs_files(run, no_html=True)
    assert (run / "loss_log.1.csv").read_text() == EARLIER_RUNS_LOG
    said = []
    _new_runs_files(run, say=said.append)
    assert {path.name: path.read_bytes()
            for path in (run / WEB / "images.1").iterdir()} == EARLIER_SAMPLES
    assert [line for line in said if "the 2 sample image(s)" in line]
