"""A resume takes --beta1 from its command line, as the reference's --continue_train does (it
builds a fresh Adam from its options): loading the saved optimizers must not bring the saved
beta1 back, for G and D, with torch's Adam and with MasterWeightsAdam (whose kernel reads a
device copy of it). Adam's moments stay the saved ones."""
import io
import os
import signal

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks, train_argv, write_aligned_dataset
from helpers.triton_interpreter import KERNELS


def _saved_engine_state(**options):
    engine = Pix2PixEngine(*tiny_networks(), beta1=0.5, **options)
    for batch in random_batches(2):
        engine.step(*batch)
    buffer = io.BytesIO()
    torch.save(engine.state_dict(), buffer)
    buffer.seek(0)
    return engine, torch.load(buffer, weights_only=True)


def _betas(engine):
    return [tuple(group["betas"]) for optimizer in (engine.optimizer_G, engine.optimizer_D)
            for group in optimizer.param_groups]


def test_a_loaded_engine_keeps_its_own_beta1_and_the_saved_moments():
    saved_engine, state = _saved_engine_state()
    resumed = Pix2PixEngine(*tiny_networks(seed=7), beta1=0.7)
    resumed.load_state_dict(state)
    assert _betas(resumed) == [(0.7, 0.999)] * 2
    for name in ("optimizer_G", "optimizer_D"):
        saved = getattr(saved_engine, name).state_dict()["state"]
        loaded = getattr(resumed, name).state_dict()["state"]
        assert all(torch.equal(saved[k]["exp_avg"], loaded[k]["exp_avg"]) for k in saved)


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")
def test_master_weights_adam_kernel_reads_the_new_beta1():
    from fastp2p.ops.adam import HYPER_FIELDS
    _, state = _saved_engine_state(master_weights=True)
    resumed = Pix2PixEngine(*tiny_networks(seed=7), beta1=0.7, master_weights=True)
    resumed.load_state_dict(state)
    assert _betas(resumed) == [(0.7, 0.999)] * 2
    for optimizer in (resumed.optimizer_G, resumed.optimizer_D):
        assert optimizer._hyper[HYPER_FIELDS.index("beta1")].item() == 0.7


def test_continue_train_with_another_beta1_uses_it(tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")
    original = Pix2PixEngine.step
    seen = []

    def step(self, real_A, real_B):
        seen.append(_betas(self))
        original(self, real_A, real_B)
        if self.steps == 2 and len(seen) == 2:   # the first run: interrupted after step 2
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(Pix2PixEngine, "step", step)
    argv = train_argv(data, tmp_path / "ckpt", "--no_html")
    assert main([*argv, "--beta1", "0.5"]) == 128 + signal.SIGINT
    assert seen == [[(0.5, 0.999)] * 2] * 2
    seen.clear()
    assert main([*argv, "--beta1", "0.8", "--continue_train"]) == 0
    assert seen and all(betas == [(0.8, 0.999)] * 2 for betas in seen), seen
    state = CheckpointFolder(tmp_path / "ckpt", "tiny").load_train_state("latest")
    for name in ("optimizer_G", "optimizer_D"):
        assert state["engine"][name]["param_groups"][0]["betas"][0] == 0.8
