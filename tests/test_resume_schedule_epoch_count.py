"""A resumed run's lr schedule counts its epochs from the --epoch_count of the run that saved
the state, whatever --epoch_count the resuming command line gives: the resumed run ends with
bitwise the weights and the lrs of the uninterrupted one. An older fastp2p's state, which does
not record that --epoch_count, counts from the command line's, so one after the saved epoch is
refused (it overflowed, or multiplied the lr, with --lr_policy step)."""
import csv
import math
import shutil

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.train_state_check import train_state_problem
from helpers.train_helpers import (folder_files, one_line, signal_after_step, train_argv,
                                   train_tiny_run, write_aligned_dataset,
                                   write_train_state_with_manifest)

# 4 pairs at batch 1: 4 steps an epoch; --n_epochs 2 --n_epochs_decay 1: epochs up to 3
EPOCHS = ("--n_epochs", "2", "--n_epochs_decay", "1", "--no_html")


def _lrs(folder):
    with open(folder / "loss_log.csv", newline="") as handle:
        return {int(row["step"]): float(row["lr"]) for row in csv.DictReader(handle)}


def _weights(folder):
    return {net: torch.load(folder / f"latest_net_{net}.pth", weights_only=True)
            for net in "GD"}


@pytest.mark.parametrize("first, resumed, stop_at", [
    # started at epoch 2, resumed with --epoch_count 1 (left out, it is the run's 2, from its
    # train_opt.txt): step decays counted from epoch 2
    (("--epoch_count", "2", "--lr_policy", "step", "--lr_decay_iters", "1"),
     ("--lr_policy", "step", "--lr_decay_iters", "1", "--epoch_count", "1"), 5),
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
    given = resumed[resumed.index("--epoch_count") + 1]
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


def test_a_resume_given_an_epoch_count_past_the_last_epoch_goes_on_from_its_state(tmp_path,
                                                                                  capsys):
    """An --epoch_count past the last epoch is refused for a fresh run only (mutation audit:
    no test resumed with one): a resume trains on from its state's epoch."""
    data = write_aligned_dataset(tmp_path / "data")
    folder = train_tiny_run(data, tmp_path / "ckpt") / "tiny"   # epoch 1 of 1
    capsys.readouterr()
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "2", "--n_epochs_decay", "0",
                      "--no_html", "--continue_train", "--epoch_count", "3")
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert ("the lr schedule counts its epochs from 1, as the run that saved it did (not from "
            "--epoch_count 3)") in out, out
    assert max(_lrs(folder)) == 8   # epoch 2's 4 steps after epoch 1's


def test_schedule_state_keeps_epoch_count_and_older_states_keep_todays():
    saved = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=2,
                       lr_decay_iters=1)
    state = saved.state_dict()
    assert state["epoch_count"] == 2
    loaded = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=5,
                        lr_decay_iters=1)
    loaded.load_state_dict(state, epoch=2)
    assert [loaded.lr_for_epoch(e) for e in (2, 3, 4)] == [saved.lr_for_epoch(e)
                                                           for e in (2, 3, 4)]
    older = {key: value for key, value in state.items() if key != "epoch_count"}
    kept = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=5,
                      lr_decay_iters=1)
    kept.load_state_dict(older, epoch=5)
    assert kept.epoch_count == 5 and math.isclose(kept.lr_for_epoch(6), 0.1)


def test_a_crafted_schedule_epoch_count_is_refused():
    base = {"engine": {"optimizer_G": {}, "optimizer_D": {}, "lr": 1.0, "steps": 0, "rng": {}},
            "progress": {}, "python_rng": {}, "numpy_rng": {},
            "schedule": {"plateau_scale": 1.0, "best_metric": 1.0, "bad_epochs": 0}}
    for bad in (0, "2", 1.5):
        state = {**base, "schedule": {**base["schedule"], "epoch_count": bad}}
        assert "epoch_count" in train_state_problem(state), bad


def test_an_older_state_before_the_command_lines_epoch_count_is_refused_unchanged():
    older = {"plateau_scale": 0.2, "best_metric": 3.0, "bad_epochs": 1}   # no epoch_count
    schedule = LRSchedule("step", 1.0, n_epochs=3, n_epochs_decay=3, epoch_count=10 ** 6)
    before = schedule.state_dict()
    with pytest.raises(ValueError, match=r"--epoch_count 1000000, after epoch 5 .* at most 5"):
        schedule.load_state_dict(older, epoch=5)
    assert schedule.state_dict() == before
    schedule.load_state_dict({**older, "epoch_count": 3}, epoch=5)   # recorded: its own count
    assert schedule.epoch_count == 3


@pytest.fixture(scope="module")
def older_state_run(tmp_path_factory):
    """A finished 1-epoch run whose training state (epoch 2, resumable with more epochs) has
    its schedule's epoch_count removed, as fastp2p wrote it before recording it."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)
    checkpoints = train_tiny_run(data, tmp_path_factory.mktemp("ck"))
    folder = checkpoints / "tiny"
    state = torch.load(folder / "latest_train_state.pth", weights_only=True)
    assert state["progress"]["epoch"] == 2
    del state["schedule"]["epoch_count"]
    write_train_state_with_manifest(folder, state)
    return data, checkpoints


@pytest.mark.parametrize("epoch_count, policy", [
    # 0.1 ** -(10**6 // 1): OverflowError, a traceback
    ("1000000", ("--lr_policy", "step", "--lr_decay_iters", "1")),
    # the reference's habit of the next epoch, in epoch 2: epoch 2 trained at 10 times --lr
    ("3", ("--lr_policy", "step", "--lr_decay_iters", "1")),
    # linear does not count from --epoch_count, but the state saved next, with an epoch count
    # after its epoch, could not be resumed
    ("1000000", ("--lr_policy", "linear")),
], ids=["step-huge", "step-next-epoch", "linear-huge"])
def test_an_older_state_resumed_with_a_later_epoch_count_is_refused(
        tmp_path, capsys, older_state_run, epoch_count, policy):
    data, trained = older_state_run
    checkpoints = tmp_path / "ck"
    shutil.copytree(trained, checkpoints)
    def saved():   # the checkpoint sets and their manifests
        return {name: data for name, data in folder_files(checkpoints / "tiny").items()
                if name.endswith((".pth", ".json"))}
    before = saved()
    capsys.readouterr()
    argv = train_argv(data, checkpoints, "--n_epochs_decay", "1", "--no_html", *policy,
                      "--continue_train", "--epoch_count", epoch_count)
    assert main(argv) == 1
    error = one_line(capsys.readouterr().err)
    state = checkpoints / 'tiny' / 'latest_train_state.pth'
    assert error.startswith(f"fastp2p train: error: {state}: saved by an older fastp2p"), error
    assert f"--epoch_count {epoch_count}, after epoch 2 " in error and "at most 2" in error
    assert saved() == before    # no step, no save
    # the epoch that run started at resumes it
    assert main(argv[:-1] + ["1"]) == 0
