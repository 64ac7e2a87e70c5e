"""Under torchrun a stop or checkpoint request is the job's, whichever rank the signal reached:
the ranks carry their requests in the loss read's all-reduce, so every rank stops (or saves) at
that read's step and rank 0 saves. A SIGTERM to rank 1 alone killed it silently and rank 0
crashed in its next collective, saving nothing; a SIGUSR1 to rank 1 alone was lost."""
import contextlib
import json
import os
import signal

import pytest
import torch.multiprocessing as mp

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.stop_requests import StopRequests
from helpers.torchrun_helpers import as_torchrun_rank, free_port
from helpers.train_helpers import (random_batches, signal_after_step, tiny_networks, train_argv,
                                   write_aligned_dataset)
from helpers.trainer_stand_ins import ListLoader, stand_in_trainer

# signals that rank 1 alone gets, during its engine step number N
RANK_1_SIGNALS = {1: signal.SIGUSR1, 3: signal.SIGTERM}


def _signalled_at_steps(signals):
    step = Pix2PixEngine.step

    def step_then_signal(self, real_A, real_B):
        step(self, real_A, real_B)
        if self.steps in signals:
            os.kill(os.getpid(), signals[self.steps])
    Pix2PixEngine.step = step_then_signal


def _rank(rank, port, argv, out):
    as_torchrun_rank(rank, port)
    if rank == 1:
        _signalled_at_steps(RANK_1_SIGNALS)
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as said, \
            contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        try:
            code = main(argv)
        except BaseException as err:  # noqa: BLE001 - a crash is what the test reports
            code = repr(err)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump(code, handle)


def test_signals_to_one_rank_stop_and_save_every_rank_at_the_next_loss_read(tmp_path):
    # 8 pairs at batch 1 x 2 processes: 4 steps an epoch; losses read every 2 steps
    data = write_aligned_dataset(tmp_path / "data", pairs=8)
    argv = train_argv(data, tmp_path / "ckpt", "--log-every", "2", "--no_html")
    mp.spawn(_rank, args=(free_port(), argv, str(tmp_path)), nprocs=2, join=True)

    codes = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    said = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert codes == [128 + signal.SIGTERM] * 2, said
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert f"SIGUSR1 received: saving {folder.path}/latest_* at step 2" in said[0], said
    assert (f"SIGTERM received: saved {folder.path}/latest_* at step 4; resume with "
            "--continue_train") in said[0], said
    assert "received" not in said[1] and "Traceback" not in said[1], said
    assert folder.manifest("latest")["step"] == 4


def _two_ranks(**options):
    return [StopRequests(shared=True, **options) for _ in range(2)]


def _all_reduce(ranks):
    """What the loss read's all-reduce gives every rank: the sum of their flags."""
    summed = [sum(flags) for flags in zip(*(stops.shared_flags() for stops in ranks))]
    for stops in ranks:
        stops.agree(summed)


def test_a_shared_request_is_acted_on_by_every_rank_only_once_agreed():
    ranks = _two_ranks(checkpoint_requests=True)
    ranks[1].signal_number = signal.SIGTERM
    ranks[1].checkpoint_request = signal.SIGUSR2
    assert [stops.stop_request() for stops in ranks] == [None, None]   # not yet agreed
    assert [stops.take_checkpoint_request() for stops in ranks] == [None, None]
    _all_reduce(ranks)
    assert [stops.stop_request() for stops in ranks] == [signal.SIGTERM] * 2
    assert [stops.take_checkpoint_request() for stops in ranks] == ["SIGUSR2"] * 2
    _all_reduce(ranks)   # the checkpoint request was taken once; the stop stays
    assert [stops.take_checkpoint_request() for stops in ranks] == [None, None]
    assert [stops.stop_request() for stops in ranks] == [signal.SIGTERM] * 2


def test_a_single_process_acts_on_its_own_requests_at_once():
    stops = StopRequests(checkpoint_requests=True)
    stops.signal_number, stops.checkpoint_request = signal.SIGINT, signal.SIGUSR1
    assert stops.stop_request() == signal.SIGINT
    assert stops.take_checkpoint_request() == "SIGUSR1"


@pytest.mark.parametrize("epochs", [(1, 1), (1, 0)], ids=["not-the-last-epoch", "the-last-epoch"])
def test_a_stop_agreed_at_the_epoch_end_read_stops_after_that_epochs_save(tmp_path, monkeypatch,
                                                                          epochs):
    """It went on for a step (and a second save) into the next epoch, or, after the last
    epoch, ended with exit code 0 and no word of the signal."""
    n_epochs, n_epochs_decay = epochs
    netG, netD = tiny_networks()
    # 3 steps an epoch, losses read every 2: the epoch's end reads step 3 alone
    trainer, lines = stand_in_trainer(tmp_path, netG, netD, world_size=2, log_every=2,
                                      n_epochs=n_epochs, n_epochs_decay=n_epochs_decay)
    signal_after_step(monkeypatch, 3, signal.SIGTERM)
    assert trainer.fit(ListLoader(random_batches(3))) == 128 + signal.SIGTERM, lines
    assert trainer.engine.steps == 3
    assert lines[-1] == (f"SIGTERM received: saved {trainer.checkpoints.path}/latest_* at step 3; "
                         "resume with --continue_train"), lines
    assert trainer.checkpoints.manifest("latest")["step"] == 3
