"""A save under several labels (latest and an epoch or iter_N) commits latest last: a kill
between two of its commits leaves latest_* at the previous save, so a resume saves the other
labels again, and a run whose last save was cut there still ends with its N_* set."""
import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import tiny_networks, train_argv, write_aligned_dataset


class SimulatedKill(BaseException):
    """Stops a save where kill -9 would: no except or cleanup code of the project runs."""


def _kill_after_commit(monkeypatch, call):
    """The process dies right after its ``call``-th manifest commit; returns the labels
    committed, in order."""
    real_commit, committed = CheckpointFolder._commit, []

    def commit(self, label, *args):
        real_commit(self, label, *args)
        committed.append(label)
        if len(committed) == call:
            raise SimulatedKill
    monkeypatch.setattr(CheckpointFolder, "_commit", commit)
    return committed


@pytest.mark.parametrize("labels", [["latest", "3"], ["3", "latest"], ["latest", "iter_12"]])
def test_latest_is_committed_after_the_other_labels(tmp_path, monkeypatch, labels):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"tag": "old"}, step=4)
    with monkeypatch.context() as patch:
        committed = _kill_after_commit(patch, 1)
        with pytest.raises(SimulatedKill):
            folder.save(labels, netG, netD, {"tag": "new"}, step=8)
    other = next(label for label in labels if label != "latest")
    assert committed == [other]
    assert folder.manifest("latest")["step"] == 4   # a resume starts before the cut save
    folder.prepare()   # the next run finishes the committed set's renames
    assert folder.load_train_state(other)["tag"] == "new"
    assert folder.load_train_state("latest")["tag"] == "old"


def _weights(folder, label):
    return {net: torch.load(folder / f"{label}_net_{net}.pth", weights_only=True)
            for net in "GD"}


def test_a_run_killed_between_the_last_saves_commits_still_ends_with_its_epoch_set(tmp_path,
                                                                                   monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")
    # epochs 1 and 2 of 4 steps; saves: latest after epoch 1, latest and 2 after epoch 2
    assert main(train_argv(data, tmp_path / "straight", "--no_html")) == 0
    with monkeypatch.context() as patch:
        _kill_after_commit(patch, 2)   # the last save's first commit
        with pytest.raises(SimulatedKill):
            main(train_argv(data, tmp_path / "killed", "--no_html"))
    assert main(train_argv(data, tmp_path / "killed", "--no_html", "--continue_train")) == 0
    straight, resumed = tmp_path / "straight/tiny", tmp_path / "killed/tiny"
    for label in ("latest", "2"):
        assert CheckpointFolder(tmp_path / "killed", "tiny").manifest(label)["step"] == 8
        expected, got = _weights(straight, label), _weights(resumed, label)
        for net in "GD":
            for key in expected[net]:
                assert torch.equal(expected[net][key], got[net][key]), (label, net, key)
    assert not [path.name for path in resumed.glob(".*.tmp-*")]
