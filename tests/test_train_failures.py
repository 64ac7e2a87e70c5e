"""Failures: a NaN loss stops training and keeps the last good checkpoint; a failed write
reports it and leaves the previous checkpoint as it was; an environment setting the ops refuse
is said before the run folder is written."""
import errno

import pytest
import torch

import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks, train_argv, write_aligned_dataset


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                          capsys):
    data = write_aligned_dataset(tmp_path / "data")
    original = Pix2PixEngine.step

    def poisoned_step(self, real_A, real_B):
        if self.steps == 5:  # the 6th step sees a NaN pixel
            real_A = real_A.clone()
            real_A[0, 0, 0, 0] = float("nan")
        original(self, real_A, real_B)
    monkeypatch.setattr(Pix2PixEngine, "step", poisoned_step)
    # epoch 1 (steps 1-4) ends with a save; latest is also saved every 2 images in epoch 2
    code = main(train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "2",
                           "--log-every", "3"))
    assert code == 1
    err = capsys.readouterr().err
    assert "NaN or Inf at step 6" in err and "unchanged" in err
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    state = folder.load_train_state("latest")
    assert state["progress"]["images"] == 4  # the save at image 6 was refused
    weights = torch.load(folder.file("latest", "net_G.pth"), weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_engine_names_the_first_nonfinite_step_without_syncing_each_step():
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    batches = random_batches(3)
    engine.step(*batches[0])
    assert engine.first_nonfinite_step() == 0
    engine.step(batches[1][0] * float("inf"), batches[1][1])
    engine.step(*batches[2])
    assert engine.first_nonfinite_step() == 2


def test_failed_write_keeps_the_previous_checkpoint_and_leaves_no_temp_files(tmp_path,
                                                                            monkeypatch):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"progress": 1})
    before = _files(folder.path)
    real_save = torch.save
    calls = []

    def disk_fills_up(obj, handle):
        calls.append(1)
        if len(calls) == 2:  # G is written, D's file is half written when the disk is full
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, handle)
    monkeypatch.setattr(checkpoints_module.torch, "save", disk_fills_up)
    with torch.no_grad():
        for param in netG.parameters():
            param.add_(1.0)
    try:
        folder.save(["latest"], netG, netD, {"progress": 2})
    except CheckpointWriteError as err:
        assert "No space left" in str(err) and "unchanged" in str(err)
    else:
        raise AssertionError("the failed write was not reported")
    assert _files(folder.path) == before


def test_permission_error_on_the_commit_is_reported(tmp_path, monkeypatch):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"progress": 1})
    before = _files(folder.path)

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))
    monkeypatch.setattr(checkpoints_module.os, "replace", refuse)
    monkeypatch.setattr("fastp2p.atomic_files.os.replace", refuse)
    try:
        folder.save(["latest"], netG, netD, {"progress": 2})
    except CheckpointWriteError as err:
        assert "Permission denied" in str(err)
    else:
        raise AssertionError("the failed write was not reported")
    assert _files(folder.path) == before
    assert not list(folder.path.glob(".*"))


def test_training_reports_a_failed_write_and_exits_1(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")
    assert main(argv) == 0
    folder = tmp_path / "ckpt" / "tiny"
    before = {name: data for name, data in _files(folder).items() if name.endswith(".pth")}

    def disk_full(obj, handle):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoints_module.torch, "save", disk_full)
    assert main(argv + ["--overwrite"]) == 1   # a new run in the folder: the saves fail
    assert "No space left on device" in capsys.readouterr().err
    after = {name: data for name, data in _files(folder).items() if name.endswith(".pth")}
    assert after == before


@pytest.mark.parametrize("variable", ["FASTP2P_CONV", "FASTP2P_BACKEND"])
def test_a_refused_environment_setting_is_said_before_the_run_folder_is_written(
        tmp_path, monkeypatch, capsys, variable):
    """A bad FASTP2P_CONV was said at the first step, after the start line, leaving
    train_opt.txt and loss_log.csv in a run folder without a checkpoint."""
    data = write_aligned_dataset(tmp_path / "data")
    monkeypatch.setenv(variable, "bogus")
    assert main(train_argv(data, tmp_path / "ckpt")) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"fastp2p train: error: {variable} must be one of ") and \
        err.count("\n") == 1, err
    assert "training tiny" not in out
    assert not (tmp_path / "ckpt").exists()
