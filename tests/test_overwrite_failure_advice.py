"""A run started with --overwrite that fails before its first save is on disk (out of memory, a
failed write, a NaN stop) says that no checkpoint of this run exists yet and to run it again
with --overwrite: the latest_* set still in the folder is the replaced run's, which
--continue_train would resume instead."""
import errno

import pytest
import torch

import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.cli import main
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import train_argv, write_aligned_dataset


def _fail_first_step(monkeypatch):
    def out_of_memory(self, real_A, real_B):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
    monkeypatch.setattr(Pix2PixEngine, "step", out_of_memory)


def _fail_first_write(monkeypatch):
    def disk_full(obj, handle):
        raise OSError(errno.ENOSPC, "No space left on device", "latest_net_G.pth")
    monkeypatch.setattr(checkpoints_module.torch, "save", disk_full)


def _nan_first_step(monkeypatch):
    """Nothing patched: the command line's lr 1e30 makes the losses NaN from the first step."""


@pytest.mark.parametrize("fail, words", [
    (_fail_first_step, "run it again with --overwrite"),
    (_fail_first_write, "run again with --overwrite"),
    (_nan_first_step, "training stopped and no checkpoint of this run exists yet")],
    ids=["out-of-memory", "write-failure", "nan-stop"])
def test_a_failure_before_the_first_save_does_not_resume_the_replaced_run(tmp_path, monkeypatch,
                                                                         capsys, fail, words):
    data = write_aligned_dataset(tmp_path / "data")
    assert main(train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")) == 0
    fail(monkeypatch)
    capsys.readouterr()
    lr = ["--lr", "1e30"] if fail is _nan_first_step else []
    assert main(train_argv(data, tmp_path / "ckpt", "--overwrite", "--ngf", "8", *lr)) == 1
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.startswith("fastp2p train: error:")]
    assert len(lines) == 1, captured
    assert "--continue_train" not in lines[0] and "unchanged" not in lines[0], lines[0]
    assert "no checkpoint of this run" in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert torch.load(tmp_path / "ckpt" / "tiny" / "latest_net_G.pth")  # the replaced run's
