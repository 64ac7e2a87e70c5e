"""A resume in the middle of an epoch on a dataset that no longer holds the pairs that epoch was
begun on (images added, the pack re-packed) says so in one line: the epoch's order is drawn from
the pair count, so the rest of it cannot be the order it began (QA: it went on silently). A
resume at an epoch's end, on the same count, or from a state that does not record the count
(an older fastp2p's) gets no such line."""
import signal

import pytest

from fastp2p.cli import main
from fastp2p.train.position import Progress
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import signal_after_step, train_argv, write_aligned_dataset


def _add_pairs(data, count):
    """``count`` more pairs in ``data``/train, under names after the first dataset's."""
    extra = write_aligned_dataset(data.parent / "extra", pairs=count, phases=("train",), seed=9)
    for index, image in enumerate(sorted((extra / "train").iterdir())):
        image.rename(data / "train" / f"9{index:02d}.png")


def _pack(data, out):
    assert main(["pack", str(data), str(out), "--load_size", "32", "--workers", "1",
                 "--no-progress"]) == 0


def _interrupted_then_resumed(tmp_path, monkeypatch, capsys, stop_step, *, packed, added):
    """Train 4 pairs (batch 1) until SIGINT after ``stop_step``, add ``added`` pairs (re-packed
    if ``packed``) and resume: the resumed run's stdout."""
    data = write_aligned_dataset(tmp_path / "data", pairs=4, phases=("train",))
    dataroot = tmp_path / "packed" if packed else data
    if packed:
        _pack(data, dataroot)
    argv = train_argv(dataroot, tmp_path / "ckpt", "--no_html")
    with monkeypatch.context() as patch:
        signal_after_step(patch, stop_step)
        assert main(argv) == 128 + signal.SIGINT
    _add_pairs(data, added)
    if packed:
        _pack(data, dataroot)
    capsys.readouterr()
    assert main(argv + ["--continue_train"]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "pack"])
def test_a_changed_pair_count_mid_epoch_is_said_in_one_line(tmp_path, monkeypatch, capsys,
                                                            packed):
    out = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, 2, packed=packed, added=2)
    lines = [line for line in out.splitlines() if "was begun on" in line]
    assert len(lines) == 1, out
    assert "epoch 1 was begun on 4 pairs and the dataset now holds 6" in lines[0], lines[0]
    assert "resume with the dataset as it was (4 pairs)" in lines[0], lines[0]
    assert "training tiny: 6 pairs" in out


def test_no_line_at_an_epochs_end_or_on_the_same_count(tmp_path, monkeypatch, capsys):
    # step 4 ends epoch 1 of 4 pairs: the resume begins epoch 2, drawn from the new count
    out = _interrupted_then_resumed(tmp_path / "end", monkeypatch, capsys, 4, packed=False,
                                    added=2)
    assert "was begun on" not in out and "resumed" in out, out
    out = _interrupted_then_resumed(tmp_path / "same", monkeypatch, capsys, 2, packed=False,
                                    added=0)
    assert "was begun on" not in out and "resumed" in out, out


def test_a_state_without_the_count_gets_no_line():
    trainer = Trainer.__new__(Trainer)     # only the resumed progress is read
    trainer.progress = Progress(epoch=1, epoch_batches=2, images=2, epoch_images=2)
    assert trainer.pairs_changed_note(6) is None
    trainer.progress.dataset_pairs = 4
    assert "begun on 4 pairs" in trainer.pairs_changed_note(6)
