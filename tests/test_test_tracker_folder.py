"""`fastp2p test --tensorboard / --use_wandb` write into the run's folder CHECKPOINTS_DIR/NAME,
beside training's events (tensorboard/test next to tensorboard/train); when that folder cannot
be written, into the results folder, said in one line. Stand-in tracker modules record where."""
import shutil

import pytest

from fastp2p.cli import main
from helpers.tracker_stand_ins import install_tracker_stand_ins
from helpers.train_helpers import tiny_test_argv, train_tiny_run, write_aligned_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("test_trackers")
    data = write_aligned_dataset(root / "data")
    return data, train_tiny_run(data, root / "ckpt")


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the trained run per test (the tests write tracker folders into it)."""
    data, checkpoints = trained
    return data, shutil.copytree(checkpoints, tmp_path / "ckpt")


def test_tensorboard_events_of_test_sit_beside_training_ones(run_copy, tmp_path, monkeypatch,
                                                             capsys):
    data, checkpoints = run_copy
    log_dirs = install_tracker_stand_ins(monkeypatch).tensorboard
    argv = tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test", "1",
                          "--tensorboard")
    assert main(argv) == 0
    assert log_dirs == [str(checkpoints / "tiny" / "tensorboard" / "test")]
    assert "note:" not in capsys.readouterr().out


def test_wandb_of_test_writes_in_the_run_folder(run_copy, tmp_path, monkeypatch):
    data, checkpoints = run_copy
    dirs = install_tracker_stand_ins(monkeypatch).wandb
    argv = tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test", "1",
                          "--use_wandb")
    assert main(argv) == 0
    assert dirs == [str(checkpoints / "tiny")]


def test_an_unwritable_run_folder_sends_the_events_to_the_results(run_copy, tmp_path,
                                                                  monkeypatch, capsys):
    data, checkpoints = run_copy
    # a file where the tracker folder would go: it cannot be made (for root too, unlike chmod)
    (checkpoints / "tiny" / "tensorboard").write_text("not a folder")
    log_dirs = install_tracker_stand_ins(monkeypatch).tensorboard
    argv = tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test", "1",
                          "--tensorboard")
    assert main(argv) == 0
    results = tmp_path / "results" / "tiny" / "test_latest"
    assert log_dirs == [str(results / "tensorboard" / "test")]
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and str(checkpoints / "tiny") in notes[0] and str(results) in notes[0]
    assert (results / "index.html").is_file()
