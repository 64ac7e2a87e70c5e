"""A resumed run's lr schedule counts its epochs from the --epoch_count of the run that saved
the state, whatever --epoch_count the resuming command line gives: the resumed run ends with
bitwise the weights and the lrs of the uninterrupted one."""
import csv
import math

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.train_state_check import train_state_problem
from helpers.train_helpers import signal_after_step, train_argv, write_aligned_dataset

# 4 pairs at batch 1: 4 steps an epoch; --n_epochs 2 --n_epochs_decay 1: epochs up to 3
EPOCHS = ("--n_epochs", "2", "--n_epochs_decay", "1", "--no_html")


def _lrs(folder):
    with open(folder / "loss_log.csv", newline="") as handle:
        return {int(row["step"]): float(row["lr"]) for row in csv.DictReader(handle)}


def _weights(folder):
    return {net: torch.load(folder / f"latest_net_{net}.pth", weights_only=True)
            for net in "GD"}


@pytest.mark.parametrize("first, resumed, stop_at", [
    # started at epoch 2, resumed without --epoch_count: step decays counted from epoch 2
    (("--epoch_count", "2", "--lr_policy", "step", "--lr_decay_iters", "1"),
     ("--lr_policy", "step", "--lr_decay_iters", "1"), 5),
    # started at epoch 1, resumed in epoch 3 with the reference's habit --epoch_count 3: the
    # cosine reaches 0 at epoch 3 (a schedule counted from 3 would restart at the full lr)
    (("--lr_policy", "cosine"), ("--lr_policy", "cosine", "--epoch_count", "3"), 9),
], ids=["step-started-at-2", "cosine-resumed-with-epoch_count-3"])
def test_a_resumed_schedule_counts_from_the_saved_epoch_count(tmp_path, monkeypatch, capsys,
                                                              first, resumed, stop_at):
    data = write_aligned_dataset(tmp_path / "data")
    assert main(train_argv(data, tmp_path / "straight", *EPOCHS, *first)) == 0
    with monkeypatch.context() as patch:
        signal_after_step(patch, stop_at)
        assert main(train_argv(data, tmp_path / "resumed", *EPOCHS, *first)) == 128 + 2
    capsys.readouterr()
    assert main(train_argv(data, tmp_path / "resumed", *EPOCHS, *resumed,
                           "--continue_train")) == 0
    straight, resumed_run = tmp_path / "straight/tiny", tmp_path / "resumed/tiny"
    assert _lrs(resumed_run) == _lrs(straight)
    expected, got = _weights(straight), _weights(resumed_run)
    for net in "GD":
        assert expected[net].keys() == got[net].keys()
        for key in expected[net]:
            assert torch.equal(expected[net][key], got[net][key]), (net, key)
    out = capsys.readouterr().out
    saved_count = first[first.index("--epoch_count") + 1] if "--epoch_count" in first else "1"
    given = resumed[resumed.index("--epoch_count") + 1] if "--epoch_count" in resumed else "1"
    notes = [line for line in out.splitlines() if "lr schedule counts its epochs" in line]
    assert len(notes) == 1 and f"from {saved_count}," in notes[0], out
    assert f"--epoch_count {given})" in notes[0], notes


def test_a_resume_with_the_same_epoch_count_says_nothing_about_it(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    first = ("--epoch_count", "2")
    with monkeypatch.context() as patch:
        signal_after_step(patch, 2)
        assert main(train_argv(data, tmp_path / "ckpt", *EPOCHS, *first)) == 128 + 2
    capsys.readouterr()
    assert main(train_argv(data, tmp_path / "ckpt", *EPOCHS, *first, "--continue_train")) == 0
    assert "lr schedule counts" not in capsys.readouterr().out


def test_schedule_state_keeps_epoch_count_and_older_states_keep_todays():
    saved = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=2,
                       lr_decay_iters=1)
    state = saved.state_dict()
    assert state["epoch_count"] == 2
    loaded = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=5,
                        lr_decay_iters=1)
    loaded.load_state_dict(state)
    assert [loaded.lr_for_epoch(e) for e in (2, 3, 4)] == [saved.lr_for_epoch(e)
                                                           for e in (2, 3, 4)]
    older = {key: value for key, value in state.items() if key != "epoch_count"}
    kept = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=5,
                      lr_decay_iters=1)
    kept.load_state_dict(older)
    assert kept.epoch_count == 5 and math.isclose(kept.lr_for_epoch(6), 0.1)


def test_a_crafted_schedule_epoch_count_is_refused():
    base = {"engine": {"optimizer_G": {}, "optimizer_D": {}, "lr": 1.0, "steps": 0, "rng": {}},
            "progress": {}, "python_rng": {}, "numpy_rng": {},
            "schedule": {"plateau_scale": 1.0, "best_metric": 1.0, "bad_epochs": 0}}
    for bad in (0, "2", 1.5):
        state = {**base, "schedule": {**base["schedule"], "epoch_count": bad}}
        assert "epoch_count" in train_state_problem(state), bad
