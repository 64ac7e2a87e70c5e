"""Pix2PixEngine behaviour that a mutation audit of fastp2p/train/engine.py found untested on a
CPU: the constructor's own refusals (beta1 = 1, a network without parameters, and since the
audit a lambda_L1 the command line refuses), channels_last
on both networks and the batch, a float64 batch, the step at which a generator-only non-finite
loss is recorded with fused losses, last_batch before any step, and what load_state_dict
restores (lr, step count, the CPU random state, no stale last batch)."""
import copy
import math

import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import parameters_and_buffers, random_batches, tiny_networks


def test_beta1_of_one_is_refused_by_the_engine_with_its_range():
    """beta1 = 1 never forgets a gradient; the engine names its range, not Adam's message."""
    with pytest.raises(ValueError, match=r"^beta1 must be in \[0, 1\), got 1\.0$"):
        Pix2PixEngine(*tiny_networks(), beta1=1.0)


@pytest.mark.parametrize("lambda_L1", [-1.0, math.inf, math.nan])
def test_a_lambda_l1_the_command_line_refuses_is_refused_by_the_engine(lambda_L1):
    """A negative or non-finite L1 weight trains nothing sensible: the Python API refuses what
    `fastp2p train --lambda_L1` refuses, before any step."""
    with pytest.raises(ValueError, match="^lambda_L1 must be a finite number >= 0, got "):
        Pix2PixEngine(*tiny_networks(), lambda_L1=lambda_L1)


@pytest.mark.parametrize("which", ["netG", "netD"])
def test_a_network_without_parameters_is_refused(which):
    """A parameterless G or D (a stand-in, a wrong module) would train nothing of that side."""
    nets = dict(zip(("netG", "netD"), tiny_networks()))
    nets[which] = torch.nn.Identity()
    with pytest.raises(ValueError, match="^netG and netD must both have parameters$"):
        Pix2PixEngine(nets["netG"], nets["netD"])


def test_channels_last_puts_both_networks_and_the_batch_in_channels_last(one_thread):
    """channels_last is a promise about every weight and activation, D's included."""
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD, channels_last=True)
    for net in (netG, netD):
        weights = [p for p in net.parameters() if p.dim() == 4]
        assert weights and all(p.is_contiguous(memory_format=torch.channels_last)
                               and not p.is_contiguous() for p in weights)
    engine.step(*random_batches(1)[0])
    real_A, _, real_B = engine.last_batch()
    assert all(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
               for t in (real_A, real_B))


@pytest.mark.parametrize("fused_step_losses", [False, True], ids=["unfused", "fused"])
def test_a_generator_only_nonfinite_loss_is_recorded_at_its_own_step(one_thread,
                                                                      fused_step_losses):
    """A G loss alone going Inf (D's still finite) is reported at that step, not the next."""
    engine = Pix2PixEngine(*tiny_networks(), fused_step_losses=fused_step_losses)
    for index, (real_A, real_B) in enumerate(random_batches(3)):
        if index == 2:
            engine.lambda_L1 = math.inf   # step 3's G_L1 is Inf; its D step is untouched
        engine.step(real_A, real_B)
    losses = engine.read_losses()
    assert math.isinf(losses["G_L1"]) and math.isfinite(losses["D_real"])
    assert math.isfinite(losses["D_fake"])
    assert engine.first_nonfinite_step() == 3


def test_last_batch_before_any_step_is_a_clear_value_error():
    """A sample writer asking too early gets the engine's message, not a TypeError."""
    engine = Pix2PixEngine(*tiny_networks())
    with pytest.raises(ValueError, match="no step has run since the engine was created"):
        engine.last_batch()


@pytest.fixture
def saved(one_thread):
    """(an engine after two steps at lr 1e-4, its state_dict)."""
    engine = Pix2PixEngine(*tiny_networks(), lr=1e-4)
    for real_A, real_B in random_batches(2):
        engine.step(real_A, real_B)
    return engine, engine.state_dict()


def _loaded(state):
    engine = Pix2PixEngine(*tiny_networks(seed=5), lr=3e-4)
    engine.load_state_dict(state)
    return engine


def test_a_loaded_engine_takes_the_saved_learning_rate(saved):
    """A resume through the Python API goes on at the saved lr, and saves it again as such."""
    loaded = _loaded(saved[1])
    assert loaded.lr == 1e-4 and loaded.state_dict()["lr"] == 1e-4
    assert all(group["lr"] == 1e-4 for optimizer in (loaded.optimizer_G, loaded.optimizer_D)
               for group in optimizer.param_groups)


def test_a_loaded_engine_counts_on_from_the_saved_steps(saved):
    """Step numbers (logs, checkpoint names, first_nonfinite_step) continue, not restart."""
    loaded = _loaded(saved[1])
    assert loaded.steps == 2
    loaded.step(*random_batches(1, seed=9)[0])
    assert loaded.steps == 3


def test_loading_restores_the_saved_cpu_random_state(saved):
    """The state promises a bit-exact resume: random draws after a load are the saved run's."""
    state = saved[1]
    expected = torch.rand(8)          # the draws that follow the save
    torch.manual_seed(1234)           # anything else drawn or seeded in between
    _loaded(state)
    assert torch.equal(torch.rand(8), expected)


def test_last_batch_after_a_load_is_refused_until_the_next_step(saved):
    """A loaded engine holds no batch of its own run: sample pages must not show a stale one."""
    engine, state = saved
    engine.load_state_dict(state)
    with pytest.raises(ValueError, match="no step has run since the engine was created or loaded"):
        engine.last_batch()
    real_A, real_B = random_batches(1, seed=9)[0]
    engine.step(real_A, real_B)
    assert torch.equal(engine.last_batch()[0], real_A)


def test_a_float64_batch_trains_as_its_float32_rounding(one_thread):
    """The step takes any floating batch and computes in float32, the networks' dtype."""
    netG, netD = tiny_networks()
    twins = copy.deepcopy((netG, netD))
    real_A, real_B = random_batches(1)[0]
    Pix2PixEngine(netG, netD).step(real_A.double(), real_B.double())
    Pix2PixEngine(*twins).step(real_A, real_B)
    assert all(torch.equal(ours, theirs) for ours, theirs in
               zip(parameters_and_buffers(netG, netD), parameters_and_buffers(*twins)))


def test_wgangp_with_fused_losses_ignores_labels_it_never_uses(one_thread):
    """wgangp has no labels, so label buffers written by hand must not stop a fused run."""
    engine = Pix2PixEngine(*tiny_networks(), gan_mode="wgangp", fused_step_losses=True)
    with torch.no_grad():
        engine.criterionGAN.real_label.fill_(0.9)
    engine.step(*random_batches(1)[0])
    assert engine.steps == 1 and engine.first_nonfinite_step() == 0
