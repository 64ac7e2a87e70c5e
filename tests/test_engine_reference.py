"""The eager engine is the reference implementation's optimize_parameters: bit for bit on the same
modules; against the reference networks, each of 200 steps taken from the reference run's state,
and short free runs, within DESIGN.md §5's training bound."""
import copy

import pytest
import torch

import fastp2p
from fastp2p.nn.network_state import biases_an_instance_norm_cancels
from fastp2p.reference import GANLoss, NLayerDiscriminator, UnetGenerator, get_norm_layer
from fastp2p.train.engine import LOSS_NAMES, Pix2PixEngine
from helpers.tolerances import TRAINING_200_STEPS, assert_close, relative_error
from helpers.train_helpers import (parameters_and_buffers, random_batches, reference_step,
                                   tiny_networks)
from helpers.triton_interpreter import FAST_CPU_BACKEND_PARAMS, REGISTRY_DEFAULT


def reference_networks(netG, netD, norm):
    """The reference modules with the same weights as fastp2p's."""
    refG = UnetGenerator(3, 3, netG.num_downs, ngf=netG.ngf, norm_layer=get_norm_layer(norm),
                         use_dropout=netG.use_dropout)
    refD = NLayerDiscriminator(6, ndf=netD.ndf, n_layers=netD.n_layers,
                               norm_layer=get_norm_layer(norm))
    refG.load_state_dict(netG.state_dict())
    refD.load_state_dict(netD.state_dict())
    return refG, refD


def _adam(net, beta1=0.5):
    return torch.optim.Adam(net.parameters(), lr=2e-4, betas=(beta1, 0.999))


# The second case runs a --lambda_L1 and a --beta1 other than pix2pix's 100 and 0.5: an engine
# that used those whatever it was given passed with both at their defaults.
@pytest.mark.parametrize("norm,gan_mode,use_dropout,lambda_L1,beta1", [
    ("batch", "vanilla", True, 100.0, 0.5), ("instance", "lsgan", False, 10.0, 0.9)],
    ids=["batch-vanilla-dropout", "instance-lsgan-lambda10-beta0.9"])
def test_eager_engine_is_the_reference_step_bit_for_bit(monkeypatch, norm, gan_mode, use_dropout,
                                                        lambda_L1, beta1):
    """The written-out reference step on copies of the same modules (same forward math, same
    dropout counter) gives bitwise the engine's losses, weights, buffers and gradients (D's
    holding its own step's only: D is frozen in G's step). No backend forced, as on a user's
    CPU: a forced one also runs the engine's L1 (fastp2p.ops.losses.l1_loss_for)."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    netG, netD = tiny_networks(norm=norm, num_downs=6, use_dropout=use_dropout)
    copyG, copyD = copy.deepcopy(netG), copy.deepcopy(netD)
    opt_G, opt_D = _adam(copyG, beta1), _adam(copyD, beta1)
    criterion = fastp2p.GANLoss(gan_mode)  # the engine's criterion (the fused loss op)
    engine = Pix2PixEngine(netG, netD, gan_mode=gan_mode, lambda_L1=lambda_L1, beta1=beta1)
    for real_A, real_B in random_batches(3, size=64):
        expected = reference_step(copyG, copyD, opt_G, opt_D, criterion, real_A, real_B,
                                  lambda_L1)
        engine.step(real_A, real_B)
        got = engine.read_losses()
        assert [got[name] for name in LOSS_NAMES] == expected
    for ours, theirs in zip(parameters_and_buffers(netG, netD),
                            parameters_and_buffers(copyG, copyD)):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip([*netG.parameters(), *netD.parameters()],
                            [*copyG.parameters(), *copyD.parameters()]):
        assert torch.equal(ours.grad, theirs.grad)
    start_G, _ = tiny_networks(norm=norm, num_downs=6, use_dropout=use_dropout)
    assert not all(torch.equal(a, b) for a, b in zip(start_G.parameters(), netG.parameters()))


# 200 steps through the interpreted Triton kernels would take minutes: reference math and C++.


def _set_to_the_reference_state(engine, refG, refD, opt_G, opt_D):
    """The engine's networks and optimizers given copies of the reference run's state. Copies:
    Optimizer.load_state_dict keeps the very tensors it is given when dtype and device match,
    and two optimizers sharing moments would each update them."""
    engine.netG.load_state_dict(refG.state_dict())
    engine.netD.load_state_dict(refD.state_dict())
    engine.optimizer_G.load_state_dict(copy.deepcopy(opt_G.state_dict()))
    engine.optimizer_D.load_state_dict(copy.deepcopy(opt_D.state_dict()))


def _flat(net, left_out):
    return torch.cat([w.flatten() for w in _named_tensors(net, left_out, "weights").values()])


def _named_tensors(net, left_out, what) -> dict:
    """{name: tensor} of a network's parameters ("weights", without the names in ``left_out``)
    or floating-point buffers ("buffers")."""
    if what == "buffers":
        return {n: b for n, b in net.named_buffers() if b.is_floating_point()}
    return {n: p.detach() for n, p in net.named_parameters() if n not in left_out}


# Each parameter tensor's update in one step, against the reference's: the whole-network
# weight bound cannot see one layer's update doubled or missing (a reviewer's injected gradient
# x2 and x0 in D's first conv gave weights 3.1e-4 and 7.8e-4 apart, within 1e-3), but its update
# is then 0.87 and 1.0 away. A x1.3 gradient there moves it less, by step: 0 at step 0 (Adam's
# first update is the gradient's sign), 0.09-0.28 after (median 0.25), so every variant fails at
# step 9 (batch norm, 0.2018) or 10 (instance, 0.2087), at 1 thread. Measured without a defect,
# 200 steps, C++ backend: worst 1.2e-3 (batch norm) and, at the ill-conditioned step 19 of
# instance norm with 1 thread (see below), 6.4e-2 (D's first-conv bias); 1.4e-4 at 2 threads.
# On an AVX-512 Xeon (torch 2.13.0, 1 thread, all six variants) the worst was 7.7e-4 (batch) and
# 4.1e-3 (instance: D's last bias, step 55); D's first-conv bias moved 8.9e-7 apart at step 19.
UPDATE_PER_TENSOR = 0.2


# One thread (one_thread): the run whose worst update is measured above (6.4e-2, against 1.4e-4
# at 2 threads), and these tiny tensors (12288 elements at most) are below the C++ kernels'
# parallel grain (32768), so a second thread only splits PyTorch's own ops. On a loaded 2-core
# machine that made each step ~15x slower: cpp-batch took 258 s at 2 threads and 15 s at 1 (load
# 8), and 551 s of the 600 s per-test limit in a whole-suite run (NOTES, stop 63).
@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("backend", [*FAST_CPU_BACKEND_PARAMS, REGISTRY_DEFAULT], indirect=True)
def test_each_of_200_fused_steps_is_the_reference_step(backend, norm, one_thread):
    """DESIGN.md §5's 200 float32 steps, each checked on its own. Before every step the engine is
    given the reference run's state (weights, running statistics, Adam moments and counts), so
    each comparison is one forward, backward and Adam update: losses, weights and buffers after
    every step within DESIGN's training bound (1e-3), not only after the last, and each
    parameter tensor's update within UPDATE_PER_TENSOR of the reference's. Rounding
    differences of earlier steps are never carried over, so the chaos that lets two free runs
    drift apart (next test) cannot hide or fake a defect; a gradient scaled in one layer, which
    free-running Adam would absorb, changes the moments taken from the reference run here.

    Gradients are not compared, and the bound is not the whole-network 1e-4: at some steps the
    gradients are ill-conditioned in the exact math. At step 19 of this run (instance norm,
    1 thread) float64 backwards evaluated at two float32 roundings of one of D's conv outputs
    (2e-7 apart) give D gradients 6e-2 apart, so any two float32 implementations may differ
    that much there. D's weights after that step are 7.7e-5 apart; every other step measured
    below 2e-6 (NOTES, "a test that checks every step")."""
    netG, netD = tiny_networks(norm=norm)
    refG, refD = reference_networks(netG, netD, norm)
    opt_G, opt_D = _adam(refG), _adam(refD)
    criterion = GANLoss("vanilla")
    engine = Pix2PixEngine(netG, netD)
    left_out = {net: biases_an_instance_norm_cancels(net) for net in (refG, refD)}
    batches = random_batches(8, batch_size=2)
    for step in range(200):
        real_A, real_B = batches[step % len(batches)]
        _set_to_the_reference_state(engine, refG, refD, opt_G, opt_D)
        before = {net: {n: w.clone() for n, w in _named_tensors(net, left_out[net],
                                                                "weights").items()}
                  for net in (refG, refD)}
        expected = reference_step(refG, refD, opt_G, opt_D, criterion, real_A, real_B)
        engine.step(real_A, real_B)
        got = engine.read_losses()
        assert_close(torch.tensor([got[name] for name in LOSS_NAMES]), torch.tensor(expected),
                     TRAINING_200_STEPS, f"step {step} losses")
        for name, ours, theirs in (("G", netG, refG), ("D", netD, refD)):
            for what in ("weights", "buffers"):
                ours_now, theirs_now = (_named_tensors(net, left_out[theirs], what)
                                        for net in (ours, theirs))
                assert list(ours_now) == list(theirs_now) and (ours_now or what == "buffers")
                if ours_now:
                    assert_close(torch.cat([t.flatten() for t in ours_now.values()]),
                                 torch.cat([t.flatten() for t in theirs_now.values()]),
                                 TRAINING_200_STEPS, f"step {step} net{name} {what}")
            ours_now, theirs_now = (_named_tensors(net, left_out[theirs], "weights")
                                    for net in (ours, theirs))
            for tensor, start in before[theirs].items():
                assert_close(ours_now[tensor] - start, theirs_now[tensor] - start,
                             UPDATE_PER_TENSOR, f"step {step} net{name} {tensor}'s update")
    start_G, _ = tiny_networks(norm=norm)
    assert relative_error(_flat(start_G, set()), _flat(refG, set())) > 1e-2  # it trained


# Free runs: the weights agree to ~1e-7 for a while, then rounding-level differences grow
# chaotically, often from one step where a parameter's gradient is near zero and Adam's normalised
# step turns its rounding noise into a step of ~lr. Whether and when depends on the seed, for any
# two summation orders: benchmarks/study_training_divergence.py trained the reference against
# itself on channels-last tensors (same math, other sums) and against fastp2p, 16 seeds, 200
# steps (NOTES, "DESIGN §5's 200-step training bound"). The reference and its reordering ended
# more than 1e-3 apart in 10 of 16 seeds with batch norm (first at step 43) and 12 of 16 with
# instance norm (first at step 20); fastp2p in 6 and 13 (first at 43 and 24). So a free run is
# held to the bound only for fewer steps than any of those; the 200 steps are the test above.
# Free runs still prove what the test above resets every step: the engine's own optimizer state,
# counters and caches carried from one step to the next.
FREE_RUN_STEPS = {"batch": 40, "instance": 16}


# One thread, as the study that chose FREE_RUN_STEPS ran, and for the 200-step test's reason:
# at 2 threads on a loaded 2-core machine its batch-norm runs took 72-137 s (1 thread: 1-4 s).
@pytest.mark.parametrize("norm", sorted(FREE_RUN_STEPS))
@pytest.mark.parametrize("backend", [*FAST_CPU_BACKEND_PARAMS, REGISTRY_DEFAULT], indirect=True)
def test_fused_steps_track_the_reference_networks(backend, norm, one_thread):
    """DESIGN.md §5: float32 steps of fastp2p's modules through the engine against the reference
    networks through the reference step, run freely for FREE_RUN_STEPS: final weights within 1e-3
    relative and the loss curves on top of each other (no dropout: its masks differ by design)."""
    netG, netD = tiny_networks(norm=norm)
    refG, refD = reference_networks(netG, netD, norm)
    opt_G, opt_D = _adam(refG), _adam(refD)
    criterion = GANLoss("vanilla")
    engine = Pix2PixEngine(netG, netD)
    batches = random_batches(8, batch_size=2)
    ours, theirs = [], []
    for step in range(FREE_RUN_STEPS[norm]):
        real_A, real_B = batches[step % len(batches)]
        theirs.append(reference_step(refG, refD, opt_G, opt_D, criterion, real_A, real_B))
        engine.step(real_A, real_B)
        got = engine.read_losses()
        ours.append([got[name] for name in LOSS_NAMES])
    for name, a, b in zip(("G", "D"), (netG, netD), (refG, refD)):
        left_out = biases_an_instance_norm_cancels(b)
        assert_close(_flat(a, left_out), _flat(b, left_out), TRAINING_200_STEPS,
                     f"net{name} weights")
    assert_close(torch.tensor(ours), torch.tensor(theirs), TRAINING_200_STEPS, "loss curves")


def test_losses_average_over_steps_between_reads():
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    batches = random_batches(2)
    per_step = []
    probe = Pix2PixEngine(*tiny_networks())
    for real_A, real_B in batches:
        probe.step(real_A, real_B)
        per_step.append(probe.read_losses())
        engine.step(real_A, real_B)
    averaged = engine.read_losses()
    for name in LOSS_NAMES:
        assert averaged[name] == pytest.approx((per_step[0][name] + per_step[1][name]) / 2)
    assert engine.read_losses() == {}  # nothing since the last read


def test_set_lr_changes_both_optimizers_and_zero_lr_freezes_weights():
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    engine.set_lr(0.0)
    params = list(netG.parameters()) + list(netD.parameters())
    before = [p.detach().clone() for p in params]
    engine.step(*random_batches(1)[0])
    assert engine.lr == 0.0
    for group in engine.optimizer_G.param_groups + engine.optimizer_D.param_groups:
        assert group["lr"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    engine.set_lr(2e-4)
    engine.step(*random_batches(1)[0])
    assert not any(torch.equal(a, b) for a, b in zip(before, params))


def test_bad_options_raise_value_errors():
    netG, netD = tiny_networks()
    with pytest.raises(ValueError, match="precision"):
        Pix2PixEngine(netG, netD, precision="fp16")
    with pytest.raises(ValueError, match="CUDA"):
        Pix2PixEngine(netG, netD, cuda_graph=True)
    with pytest.raises(ValueError, match="gan_mode"):
        Pix2PixEngine(netG, netD, gan_mode="hinge")
    engine = Pix2PixEngine(netG, netD)
    with pytest.raises(ValueError, match="same batch size"):
        engine.step(torch.zeros(2, 3, 32, 32), torch.zeros(1, 3, 32, 32))
