"""Two gloo processes set up as torchrun sets them up: the plateau policy cuts the lr on every
rank alike (each rank used to decide on its own loss, and their weights drifted apart), and a
training state resumes under any number of processes with each rank on its own dropout stream
where the uninterrupted run had it (it used to fail with KeyError 'netG.module' / 'netG', and a
torchrun resume put every rank on rank 0's stream)."""
import os
import shutil

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastp2p.train.distributed as distributed_module
from fastp2p.cli import main
from fastp2p.nn.network_state import dropout_rng_modules
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.trainer import Trainer
from helpers.torchrun_helpers import as_torchrun_rank, free_port
from helpers.train_helpers import train_argv, write_aligned_dataset

SIZE = 64  # unet_64: the smallest U-Net with a dropout layer
FIT = Trainer.fit


def _argv(data, checkpoints, *extra):
    return train_argv(data, checkpoints, "--lr_policy", "plateau", "--n_epochs_decay", "0",
                      "--save_epoch_freq", "1", *extra, size=SIZE)


def _streams(net):
    return {name: module.dropout_rng.tolist() for name, module in dropout_rng_modules(net).items()}


def _record_runs(out, tag):
    """Trainer.fit saves to ``out``/run{N}_{tag}.pt, per run N of this process, the dropout
    streams it starts from (after a resume) and ends with, the plateau scale, the lr and G's
    parameters."""
    runs = []

    def recording_fit(self, loader, progress_bar=None):
        start = _streams(self.netG)
        code = FIT(self, loader, progress_bar)
        torch.save({"code": code, "start": start, "end": _streams(self.netG),
                    "plateau_scale": self.schedule.plateau_scale, "lr": self.engine.lr,
                    # parameters: the BatchNorm running statistics are each rank's own
                    "G": {k: v.detach().clone() for k, v in self.netG.named_parameters()}},
                   os.path.join(out, f"run{len(runs)}_{tag}.pt"))
        runs.append(code)
        return code
    Trainer.fit = recording_fit


def _losses_that_disagree(rank):
    """The plateau policy without patience, and generator losses read in epoch 2 that are worse
    than epoch 1's on rank 0 (20 > 10) and better on rank 1 (5 < 10): their mean, 12.5, is
    worse. 4 pairs at batch 1 x 2 processes: 2 steps an epoch."""
    LRSchedule.PLATEAU_PATIENCE = 0
    read = Pix2PixEngine.read_losses

    def disagreeing(self):
        losses = read(self)
        epoch = (self.steps - 1) // 2 + 1
        losses["G_GAN"] = {1: 10.0, 2: (20.0, 5.0)[rank]}.get(epoch, 1.0)
        losses["G_L1"] = 0.0
        return losses
    Pix2PixEngine.read_losses = disagreeing


def _rank(rank, port, argvs, out, spawn):
    as_torchrun_rank(rank, port)
    _losses_that_disagree(rank)
    _record_runs(out, f"spawn{spawn}_rank{rank}")
    # one process group for the runs of this spawn: train's own shutdown is left to the end
    dist.init_process_group("gloo")
    shutdown, distributed_module.shutdown_processes = (distributed_module.shutdown_processes,
                                                       lambda info: None)
    try:
        for argv in argvs:
            main(argv)
    finally:
        shutdown(distributed_module.ProcessInfo(rank, 2, torch.device("cpu")))


def _load(out, run, tag):
    return torch.load(os.path.join(out, f"run{run}_{tag}.pt"), weights_only=True)


def test_plateau_and_dropout_streams_agree_across_ranks_and_resumes(tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data", size=SIZE)
    whole, resumed, single = (tmp_path / name for name in ("whole", "resumed", "single"))
    out = tmp_path / "out"
    out.mkdir()
    # A single-process run of one epoch, to resume under two processes below.
    monkeypatch.setattr(Trainer, "fit", FIT)
    _record_runs(str(out), "single")
    assert main(_argv(data, single, "--n_epochs", "1")) == 0
    single_end = _load(out, 0, "single")["end"]

    # 1. two processes, 3 epochs, uninterrupted; 2. the same resumed from its epoch-2 state
    # (a copy of the folder); 3. the single-process state resumed for one more epoch.
    argv_whole = _argv(data, whole, "--n_epochs", "3")
    mp.spawn(_rank, args=(free_port(), [argv_whole], str(out), 1), nprocs=2, join=True)
    shutil.copytree(whole, resumed)
    mp.spawn(_rank, args=(free_port(), [
        _argv(data, resumed, "--n_epochs", "3", "--continue_train", "--epoch", "2"),
        _argv(data, single, "--n_epochs", "2", "--continue_train")], str(out), 2),
        nprocs=2, join=True)

    ranks = [_load(out, 0, f"spawn1_rank{rank}") for rank in range(2)]
    assert [r["code"] for r in ranks] == [0, 0]
    # the plateau cut, decided on the ranks' mean loss: the same lr, the same weights
    assert [r["plateau_scale"] for r in ranks] == [0.2, 0.2]
    assert ranks[0]["lr"] == ranks[1]["lr"]
    for name, weight in ranks[0]["G"].items():
        assert torch.equal(weight, ranks[1]["G"][name]), name
    # each rank draws its own stream, and has drawn as many mask elements as the other
    (seed, offset), = ranks[0]["end"].values()
    assert offset > 0 and list(ranks[1]["end"].values()) == [[seed + 1, offset]]

    # resumed at the end of epoch 2 on two processes: the uninterrupted run's streams, weights
    again = [_load(out, 0, f"spawn2_rank{rank}") for rank in range(2)]
    assert [r["code"] for r in again] == [0, 0]
    for rank in range(2):
        (start_seed, start_offset), = again[rank]["start"].values()
        assert start_seed == seed + rank and 0 < start_offset < offset
        assert again[rank]["end"] == ranks[rank]["end"]
        for name, weight in ranks[rank]["G"].items():
            assert torch.equal(again[rank]["G"][name], weight), name

    # the single-process state under two processes: rank r on seed + r from the saved offset
    (single_seed, single_offset), = single_end.values()
    from_single = [_load(out, 1, f"spawn2_rank{rank}") for rank in range(2)]
    assert [r["code"] for r in from_single] == [0, 0]
    assert [list(r["start"].values()) for r in from_single] == [
        [[single_seed + rank, single_offset]] for rank in range(2)]

    # the two-process state in one process: rank 0's stream goes on
    _record_runs(str(out), "alone")
    assert main(_argv(data, whole, "--n_epochs", "3", "--continue_train", "--epoch", "2")) == 0
    assert _load(out, 0, "alone")["start"] == again[0]["start"]
