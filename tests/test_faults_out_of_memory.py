"""A training step that runs out of memory (the batch's activations: the networks themselves were
checked to fit before the run) ends in one line naming the step, --batch_size and what to lower,
exit code 1, with the last good checkpoint untouched (and --continue_train suggested only when
there is one) -- on CUDA (torch.OutOfMemoryError) and on the CPU (whose allocator raises a plain
RuntimeError) alike, on whichever rank it happens. Any other RuntimeError still raises."""
from types import SimpleNamespace

import pytest
import torch

from fastp2p.cli import main
from fastp2p.command_errors import error_line
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import tiny_networks, train_argv, write_aligned_dataset

CUDA_OOM = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                  "total capacity of 139.81 GiB\nof which 1.2 GiB is free.")
CPU_OOM = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't "
                       "allocate memory: you tried to allocate 2147483648 bytes. Error code 12")
# what a convolution on the CPU raises where oneDNN cannot allocate (seen under `ulimit -v`)
ONEDNN_OOM = RuntimeError("could not create a primitive")


def _fail_at(monkeypatch, step, error):
    original = Pix2PixEngine.step

    def step_or_fail(self, real_A, real_B):
        if self.steps + 1 == step:
            raise error
        return original(self, real_A, real_B)
    monkeypatch.setattr(Pix2PixEngine, "step", step_or_fail)


@pytest.mark.parametrize("error", [CUDA_OOM, CPU_OOM, ONEDNN_OOM],
                         ids=["gpu-allocator", "cpu-allocator", "cpu-onednn"])
def test_out_of_memory_in_a_step_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                          capsys, error):
    data = write_aligned_dataset(tmp_path / "data")
    _fail_at(monkeypatch, 6, error)  # epoch 1 (steps 1-4) ends with a save
    assert main(train_argv(data, tmp_path / "ckpt")) == 1
    captured = capsys.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines()
              if line.startswith("fastp2p train: error:")]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured
    line = errors[0]
    assert "out of memory at step 6, --batch_size 1" in line, line
    assert str(error).splitlines()[0] in line and "lower --batch_size" in line, line
    assert "then resume with --continue_train; " in line and "(step 4) is unchanged" in line
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert folder.load_train_state("latest")["progress"]["images"] == 4


def test_out_of_memory_before_any_save_does_not_promise_a_resume(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    _fail_at(monkeypatch, 1, CPU_OOM)
    assert main(train_argv(data, tmp_path / "ckpt")) == 1
    err = capsys.readouterr().err
    assert "then run it again; no checkpoint was written" in err, err
    assert "--continue_train" not in err, err


def test_out_of_memory_on_another_rank_is_said_there(tmp_path, monkeypatch, capsys):
    """Under torchrun only rank 0's ``say`` prints: a rank that ran out of memory said nothing,
    and rank 0 reported only its lost peer."""
    monkeypatch.setenv("RANK", "1")
    netG, netD = tiny_networks()
    args = SimpleNamespace(n_epochs=1, n_epochs_decay=0, epoch_count=1, batch_size=2)
    engine = Pix2PixEngine(netG, netD)
    trainer = Trainer(args, engine, netG, netD, LRSchedule("linear", 2e-4, n_epochs=1,
                                                            n_epochs_decay=0),
                      CheckpointFolder(tmp_path, "run"), is_main=False, world_size=2,
                      say=lambda line: None)
    trainer._say_on_every_rank(error_line("train", trainer._out_of_memory(CUDA_OOM)))
    err = capsys.readouterr().err
    assert err.startswith("rank 1: fastp2p train: error: out of memory at step 1, --batch_size 2 "
                          "(CUDA out of memory. Tried to allocate 2.00 GiB."), err
    assert "run it again; rank 0's line says which checkpoint is kept" in err, err


def test_another_runtime_error_in_a_step_still_raises(tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")
    _fail_at(monkeypatch, 2, RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(train_argv(data, tmp_path / "ckpt"))
