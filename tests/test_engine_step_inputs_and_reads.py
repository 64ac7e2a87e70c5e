"""The engine's Python API at its edges, found by mutating fastp2p/train/engine.py: the batch
checks (rank, spatial size), the learning rate's check on every way in, and what ``last_batch``
hands the sample writer (the step's own tensors, in the page's order, out of autograd)."""
import math

import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks


@pytest.fixture
def engine():
    return Pix2PixEngine(*tiny_networks())


def test_pairs_of_other_spatial_sizes_are_refused(engine):
    real_A, real_B = random_batches(1, batch_size=2, size=32)[0]
    larger_B = torch.nn.functional.interpolate(real_B, scale_factor=2)
    with pytest.raises(ValueError, match=r"real_A \(2, 3, 32, 32\) and real_B \(2, 3, 64, 64\) "
                                         "must have the same batch size and spatial size"):
        engine.step(real_A, larger_B)
    assert engine.steps == 0


@pytest.mark.parametrize("shape", [(1, 2, 3, 32, 32), (3, 32, 32)], ids=["5-d", "3-d"])
def test_a_batch_that_is_not_four_dimensional_is_refused(engine, shape):
    bad = torch.rand(shape) * 2 - 1
    good = torch.rand(2, 3, 32, 32) * 2 - 1
    with pytest.raises(ValueError, match=r"^real_A must be a floating N x C x H x W tensor, got "
                                         + r"torch\.Size\(\[" + ", ".join(map(str, shape))):
        engine.step(bad, good)


@pytest.mark.parametrize("lr", [math.nan, -1e-4, math.inf])
def test_a_learning_rate_that_is_no_rate_is_refused_at_build_and_between_steps(lr):
    netG, netD = tiny_networks()
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        Pix2PixEngine(netG, netD, lr=lr)
    engine = Pix2PixEngine(netG, netD)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        engine.set_lr(lr)
    assert engine.lr == 2e-4
    assert all(group["lr"] == 2e-4 for optimizer in (engine.optimizer_G, engine.optimizer_D)
               for group in optimizer.param_groups)
    engine.set_lr(0.0)   # the last epoch of a linear decay
    assert engine.lr == 0.0


def test_last_batch_is_real_a_fake_b_real_b_of_the_latest_step_outside_autograd(engine):
    batches = random_batches(2, batch_size=2, size=32)
    for real_A, real_B in batches:
        engine.step(real_A, real_B)
    got_A, fake_B, got_B = engine.last_batch()
    real_A, real_B = batches[-1]
    assert torch.equal(got_A, real_A) and torch.equal(got_B, real_B)
    assert fake_B.shape == real_B.shape and not torch.equal(fake_B, real_B)
    assert fake_B.abs().max() <= 1   # the generator's tanh output
    assert not any(t.requires_grad for t in (got_A, fake_B, got_B))
