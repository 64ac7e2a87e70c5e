"""The lines of `fastp2p train` that report an error or a stop go to stderr, wherever they
happen: inside the training loop (out of memory, a failed checkpoint write, the NaN stop, a
SIGTERM's "saved" line) as before it (a refused option); progress stays on stdout. They went to
stdout from inside the loop, so a job's error log held none of them."""
import errno
import signal

import pytest

import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.cli import main
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import signal_after_step, train_argv, write_aligned_dataset


def _out_of_memory(monkeypatch):
    def step(self, real_A, real_B):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")
    monkeypatch.setattr(Pix2PixEngine, "step", step)
    return [], "out of memory at step 1"


def _disk_full(monkeypatch):
    def save(obj, handle):
        raise OSError(errno.ENOSPC, "No space left on device", "latest_net_G.pth")
    monkeypatch.setattr(checkpoints_module.torch, "save", save)
    return [], "could not write the checkpoint"


def _nan_loss(monkeypatch):
    return ["--lr", "1e30"], "a loss became NaN or Inf at step 1"


def _sigterm(monkeypatch):
    signal_after_step(monkeypatch, 2, signal.SIGTERM)
    return [], "SIGTERM received: saved"


@pytest.mark.parametrize("cause", [_out_of_memory, _disk_full, _nan_loss, _sigterm],
                         ids=["out-of-memory", "write-failure", "nan-stop", "sigterm"])
def test_a_stop_in_the_loop_is_said_on_stderr(tmp_path, monkeypatch, capsys, cause):
    data = write_aligned_dataset(tmp_path / "data")
    extra, words = cause(monkeypatch)
    assert main(train_argv(data, tmp_path / "ckpt", *extra)) != 0
    out, err = capsys.readouterr()
    assert words in err and words not in out, (out, err)
    assert "training tiny:" in out and "training tiny:" not in err   # progress on stdout
