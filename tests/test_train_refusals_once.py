"""Under torchrun every rank refuses the same options alike; the refusal used to be printed
once per rank (--norm syncbatch on CPU, --tensorboard not installed, a resume at sizes that do
not fit its position). Rank 0 prints it; the others exit with the same code, silently."""
import pytest

from fastp2p.cli import main
from fastp2p.train import train_command
from fastp2p.train.trainer import ResumeError
from helpers.train_helpers import one_line, train_argv, write_aligned_dataset

SYNCBATCH_ON_CPU = ("fastp2p train: error: --norm syncbatch needs CUDA devices across "
                    "processes (PyTorch's SyncBatchNorm has no CPU implementation); use --norm "
                    "batch or instance on CPU")


@pytest.mark.parametrize("rank, said", [("0", SYNCBATCH_ON_CPU), ("1", None)])
def test_an_option_refused_on_every_rank_is_said_by_rank_0(tmp_path, monkeypatch, capsys,
                                                            rank, said):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    argv = train_argv(data, tmp_path / "ckpt", "--norm", "syncbatch",
                      "--device", "cpu")
    assert main(argv) == 2   # refused before the data or a process group is looked at
    err = capsys.readouterr().err
    assert (one_line(err) if said else err) == (said or "")


class _TrainerAtAnotherSize:
    def resume(self, state, loader):
        raise ResumeError("cannot resume epoch 1 at its image 3")


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_a_resume_refused_is_said_by_rank_0(monkeypatch, capsys, rank, said):
    monkeypatch.setenv("RANK", rank)
    assert train_command._resume(_TrainerAtAnotherSize(), {}, "state.pth", None) == 2
    err = capsys.readouterr().err
    assert (err == "fastp2p train: error: cannot resume epoch 1 at its image 3\n") is said, err
    assert said or err == ""
