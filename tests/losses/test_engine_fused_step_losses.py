"""Pix2PixEngine(fused_step_losses=True): the same training as the engine without it (DESIGN.md
§5's training bound), the same loss logging and non-finite-step record, on CPU with the
reference launchers and with the Triton kernels (interpreted; only the loss launchers, so the
networks stay fast), and on a GPU with the captured bf16 step (skipped without one)."""
import copy

import pytest
import torch

import fastp2p.ops.backends.reference as reference_backend
from fastp2p.train.engine import LOSS_NAMES, WARMUP_STEPS, Pix2PixEngine
from helpers.forced_backend import force_backend
from helpers.tolerances import BF16_NETWORK, TRAINING_200_STEPS, assert_close, relative_error
from helpers.train_helpers import (gradients, loss_curve, parameters_and_buffers,
                                   random_batches, tiny_networks)
from helpers.triton_interpreter import KERNELS

STEPS = 5
LOSS_LAUNCHERS = ("d_step_losses_fwd", "g_step_losses_fwd")
# The GPU test's bound between two bf16 trainings of 20 captured steps, with and without the fused
# losses. DESIGN §5 has no bf16 training row; this is an estimate, not a measurement (the test
# has not run on a GPU yet, benchmarks/NOTES.md): the two runs round differently (the fused G
# step reads the bf16 fake_B and writes its gradient in bf16, the unfused one goes through
# float32), each run's outputs, of which the losses are means, may be BF16_NETWORK (2e-2) from
# float64 at the same weights, so the two may be twice that apart by the triangle inequality;
# 1e-2 more allows for the weights' drift over 20 steps. The first GPU run should measure the
# distance and replace this with a bound derived from it.
BF16_CAPTURED_20_STEPS = 2 * BF16_NETWORK + 1e-2  # 5e-2


@pytest.fixture(params=["reference", pytest.param("triton", marks=[
    pytest.mark.interpreter, pytest.mark.skipif(
        KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")])])
def loss_launchers(request, monkeypatch):
    """Which launchers compute the fused losses: the reference backend's own, or the Triton
    kernels put in its place (the registry reads launchers from the module at each call), while
    the networks run on the reference backend either way."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    if request.param == "triton":
        for name in LOSS_LAUNCHERS:
            monkeypatch.setattr(reference_backend, name, getattr(KERNELS, name))
    return request.param


def _flat(net):
    """Every floating parameter and buffer of ``net`` as one vector, less the conv biases that
    an instance norm removes again: their true gradient is zero, so Adam turns rounding noise
    in it into +-lr steps that differ between any two implementations and change no output
    (tests/test_engine_reference.py sets them apart the same way)."""
    removed = set()
    for prefix, module in net.named_modules():
        if isinstance(module, torch.nn.Sequential):
            for index, (layer, following) in enumerate(zip(module, list(module)[1:])):
                if isinstance(following, torch.nn.InstanceNorm2d):
                    removed.add(f"{prefix}.{index}.bias".lstrip("."))
    tensors = [t for name, t in [*net.named_parameters(), *net.named_buffers()]
               if name not in removed and t.is_floating_point()]
    return torch.cat([t.detach().flatten() for t in tensors])


@pytest.mark.parametrize("norm,gan_mode", [("batch", "vanilla"), ("instance", "lsgan"),
                                           ("batch", "wgangp")])
def test_fused_losses_train_as_the_unfused_engine(one_thread, loss_launchers, norm, gan_mode):
    netG, netD = tiny_networks(norm=norm)
    fusedG, fusedD = copy.deepcopy(netG), copy.deepcopy(netD)
    plain = Pix2PixEngine(netG, netD, gan_mode=gan_mode)
    fused = Pix2PixEngine(fusedG, fusedD, gan_mode=gan_mode, fused_step_losses=True)
    batches = random_batches(STEPS)
    expected, got = loss_curve(plain, batches), loss_curve(fused, batches)
    assert_close(got, expected, TRAINING_200_STEPS, "loss curves")
    for ours, theirs in ((fusedG, netG), (fusedD, netD)):
        assert_close(_flat(ours), _flat(theirs), TRAINING_200_STEPS, "weights and buffers")
    for ours, theirs in zip(gradients(fusedG, fusedD), gradients(netG, netD)):
        assert_close(ours, theirs, TRAINING_200_STEPS, "gradients of the last step")
    start_G, _ = tiny_networks(norm=norm)
    assert relative_error(fusedG.model.model[0].weight, start_G.model.model[0].weight) > 1e-4
    assert fused.first_nonfinite_step() == 0 and int(fused._device_step) == STEPS


def test_a_nonfinite_step_is_recorded_as_without_the_option(one_thread, loss_launchers):
    batches = random_batches(4)
    batches[2][1][0, 0, 0, 0] = float("nan")  # real_B of step 3
    first_bad = []
    for fused_step_losses in (False, True):
        engine = Pix2PixEngine(*tiny_networks(), fused_step_losses=fused_step_losses)
        for real_A, real_B in batches:
            engine.step(real_A, real_B)
        first_bad.append(engine.first_nonfinite_step())
    assert first_bad == [3, 3]


def test_resumed_engine_keeps_adding_to_the_restored_sums(one_thread, loss_launchers):
    """The fused ops write into the engine's own counters, which load_state_dict restores in
    place: a resumed engine's average over steps read after the resume is the straight one's."""
    batches = random_batches(3)
    first = Pix2PixEngine(*tiny_networks(), fused_step_losses=True)
    for real_A, real_B in batches[:2]:
        first.step(real_A, real_B)
    resumed = Pix2PixEngine(copy.deepcopy(first.netG), copy.deepcopy(first.netD),
                            fused_step_losses=True)
    # A copy, as a checkpoint file gives: Adam's load_state_dict keeps the very tensors it is
    # given, which the first engine goes on updating in place.
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    first.step(*batches[2])
    resumed.step(*batches[2])
    assert resumed.read_losses() == first.read_losses()
    assert int(resumed._device_step) == int(first._device_step) == 3


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="master weights on a CPU: the interpreted kernel")
def test_fused_losses_compose_with_master_weights(one_thread, loss_launchers):
    """The gradients the fused path back-propagates land in MasterWeightsAdam's flat gradient
    buffers as the loss's backward would put them there."""
    netG, netD = tiny_networks(ngf=2, ndf=2)
    fusedG, fusedD = copy.deepcopy(netG), copy.deepcopy(netD)
    plain = Pix2PixEngine(netG, netD, master_weights=True)
    fused = Pix2PixEngine(fusedG, fusedD, master_weights=True, fused_step_losses=True)
    batches = random_batches(3)
    assert_close(loss_curve(fused, batches), loss_curve(plain, batches), TRAINING_200_STEPS,
                 "loss curves")
    for ours, theirs in ((fusedG, netG), (fusedD, netD)):
        assert_close(_flat(ours), _flat(theirs), TRAINING_200_STEPS, "weights and buffers")
    for ours, theirs in zip(gradients(fusedG, fusedD), gradients(netG, netD)):
        assert_close(ours, theirs, TRAINING_200_STEPS, "gradients of the last step")


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_captured_fused_step_tracks_the_captured_unfused_step(monkeypatch, precision):
    """On a GPU: the whole step captured with the fused losses (no host sync in a replay)
    against the same capture without them, 20 steps; and fewer kernels per step."""
    from fastp2p.bench.launches import device_work_per_step

    force_backend(monkeypatch, "triton")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        batches = [(a.cuda(), b.cuda()) for a, b in random_batches(20, size=64)]
        engines, nets = [], []
        for fused_step_losses in (False, True):
            netG, netD = (net.cuda() for net in tiny_networks(num_downs=6))
            engines.append(Pix2PixEngine(netG, netD, precision=precision, channels_last=True,
                                         cuda_graph=True, fused_step_losses=fused_step_losses))
            nets.append((netG, netD))
        curves = []
        for engine in engines:
            curve = []
            for index, batch in enumerate(batches):
                if index > WARMUP_STEPS:
                    torch.cuda.set_sync_debug_mode("error")
                try:
                    engine.step(*batch)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
                if (index + 1) % 5 == 0:
                    losses = engine.read_losses()
                    curve.append([losses[name] for name in LOSS_NAMES])
            curves.append(torch.tensor(curve))
        assert engines[1]._graph is not None
        bound = TRAINING_200_STEPS if precision == "fp32" else BF16_CAPTURED_20_STEPS
        assert_close(curves[1], curves[0], bound, "loss curves")
        for ours, theirs in zip(parameters_and_buffers(*nets[1]),
                                parameters_and_buffers(*nets[0])):
            if ours.is_floating_point():
                assert relative_error(ours, theirs) <= bound
        counts = [device_work_per_step(lambda: engine.step(*batches[0]), "cuda")
                  ["kernels_per_step"] for engine in engines]
        assert counts[1] <= counts[0] - 25, counts  # predicted 33 (fp32) / 35 (bf16) fewer
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
