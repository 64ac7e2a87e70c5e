"""Under torchrun: the rank whose own step fails says why, in one line on its stderr (ranks other
than 0 used to print nothing: the job died with only rank 0's traceback), and a rank whose peer
ended says so in one line naming itself (rank 0's names the checkpoint kept), instead of gloo's
~45-line traceback. Any other error of a collective stays a traceback."""
import pytest
import torch.distributed as dist

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks
from helpers.trainer_stand_ins import ListLoader, stand_in_trainer

# gloo's words (torch 2.13) on the rank whose peer process exited
GLOO_PEER_ENDED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] "
                   "Connection closed by peer [127.0.0.1]:22440. This is typically caused by a "
                   "remote worker crashing. Check the logs of the remote worker before "
                   "reporting an error. GLHF!")


def _failing_at_step(monkeypatch, step, error):
    """Pix2PixEngine.step raises ``error`` at its step ``step`` (1-based)."""
    original = Pix2PixEngine.step

    def step_or_fail(self, real_A, real_B):
        if self.steps + 1 == step:
            raise error
        original(self, real_A, real_B)
    monkeypatch.setattr(Pix2PixEngine, "step", step_or_fail)


def _fit(tmp_path, monkeypatch, rank):
    """The exit code of a stand-in trainer of rank ``rank`` of 2 (one batch an epoch), and the
    lines its say / say_error got; off rank 0 say_error prints nothing, as train's does."""
    monkeypatch.setenv("RANK", str(rank))
    netG, netD = tiny_networks()
    trainer, lines = stand_in_trainer(tmp_path, netG, netD, world_size=2)
    trainer.is_main = rank == 0
    if rank:
        trainer.say = trainer.say_error = lambda line: None
    return trainer.fit(ListLoader(random_batches(1))), lines


@pytest.mark.parametrize("error", [RuntimeError(GLOO_PEER_ENDED),
                                   dist.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:"
                                                         "2000, remote process exited or there "
                                                         "was a network error")],
                         ids=["gloo", "nccl"])
def test_a_peer_process_end_is_one_line_naming_the_rank_and_the_checkpoint_kept(
        tmp_path, monkeypatch, capsys, error):
    _failing_at_step(monkeypatch, 2, error)   # epoch 1 saved latest_* at step 1
    code, lines = _fit(tmp_path, monkeypatch, rank=0)
    assert code == 1
    assert lines[-1] == (
        "fastp2p train: error: another process of this torchrun job ended (see its message "
        "above), so rank 0 stopped too; the last good checkpoint "
        f"{tmp_path}/run/latest_* (step 1) is unchanged")
    assert capsys.readouterr().err == ""   # said once, through say_error


def test_another_error_of_a_collective_stays_a_traceback(tmp_path, monkeypatch):
    error = dist.DistBackendError("NCCL error in: ProcessGroupNCCL.cpp:2000, unhandled cuda "
                                  "error")
    _failing_at_step(monkeypatch, 1, error)
    with pytest.raises(dist.DistBackendError, match="unhandled cuda error"):
        _fit(tmp_path, monkeypatch, rank=0)


def _nan_loss(monkeypatch):
    monkeypatch.setattr(Pix2PixEngine, "first_nonfinite_step", lambda self: self.steps or None)


def _loader_worker_killed(monkeypatch):
    _failing_at_step(monkeypatch, 1, RuntimeError(
        "DataLoader worker (pid 4242) is killed by signal: Killed. "))


def _peer_ended(monkeypatch):
    _failing_at_step(monkeypatch, 1, RuntimeError(GLOO_PEER_ENDED))


@pytest.mark.parametrize("failure, words", [
    (_nan_loss, "a loss became NaN or Inf at step 1"),
    (_loader_worker_killed, "a data loader worker died"),
    (_peer_ended, "so rank 1 stopped too; rank 0's line says which checkpoint is kept")],
    ids=["nan", "loader-worker", "peer-ended"])
def test_a_failure_on_another_rank_is_said_there_in_one_line(tmp_path, monkeypatch, capsys,
                                                             failure, words):
    failure(monkeypatch)
    code, _ = _fit(tmp_path, monkeypatch, rank=1)
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("rank 1: fastp2p train: error: ") and words in err, err
    assert err.count("\n") == 1, err


def test_another_rank_leaves_what_is_kept_on_disk_to_rank_0s_line(tmp_path, monkeypatch, capsys):
    """Another rank knows nothing of rank 0's disk: it called the latest_* of a run that
    --overwrite replaces "unchanged" (and a node-local folder's "no checkpoint written")."""
    assert _fit(tmp_path, monkeypatch, rank=0)[0] == 0   # a latest_* (step 2) in the folder
    _loader_worker_killed(monkeypatch)
    code, _ = _fit(tmp_path, monkeypatch, rank=1)
    assert code == 1
    err = capsys.readouterr().err
    assert err.rstrip().endswith("; rank 0's line says which checkpoint is kept"), err
    assert "unchanged" not in err, err
