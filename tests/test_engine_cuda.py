"""The CUDA fast engine (fused capturable Adam, device lr, bf16, channels-last, one CUDA graph)
against the eager engine on the same GPU. Runs only where CUDA is available."""
import contextlib

import pytest
import torch

from fastp2p.train.background_writer import host_copy
from fastp2p.train.engine import LOSS_NAMES, WARMUP_STEPS, Pix2PixEngine
from helpers.tolerances import TRAINING_200_STEPS, relative_error
from helpers.train_helpers import random_batches, tiny_networks
from helpers.training_moved import assert_moved_like_the_peer, snapshot

pytestmark = pytest.mark.cuda
STEPS = 20


@pytest.fixture(autouse=True)
def exact_fp32_matmuls():
    """TF32 off: the fp32 comparisons below are about the engine, not about TF32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cuda_engine(use_dropout=False, norm="batch", **options):
    netG, netD = tiny_networks(norm=norm, use_dropout=use_dropout, num_downs=6)
    netG, netD = netG.cuda(), netD.cuda()
    return Pix2PixEngine(netG, netD, **options), netG, netD


def cuda_batches(count=STEPS, batch_size=2):
    return [(a.cuda(), b.cuda()) for a, b in random_batches(count, batch_size, size=64)]


@contextlib.contextmanager
def no_host_sync():
    """Any synchronizing call (e.g. .item(), a device-to-host copy) raises inside this block."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run(engine, batches, check_sync_after=None):
    losses = []
    for index, batch in enumerate(batches):
        guard = (no_host_sync() if check_sync_after is not None and index >= check_sync_after
                 else contextlib.nullcontext())
        with guard:
            engine.step(*batch)
        if (index + 1) % 5 == 0:
            losses.append(engine.read_losses())
    torch.cuda.synchronize()
    return losses


def test_graph_engine_fp32_matches_eager_for_20_steps():
    batches = cuda_batches()
    eager, eager_G, eager_D = cuda_engine()
    graphed, graph_G, graph_D = cuda_engine(cuda_graph=True, channels_last=True)
    eager_losses = run(eager, batches)
    graph_losses = run(graphed, batches, check_sync_after=WARMUP_STEPS + 1)
    assert graphed._graph is not None  # steps after warm-up were replays
    for ours, theirs in zip(graph_losses, eager_losses):
        for name in LOSS_NAMES:
            assert ours[name] == pytest.approx(theirs[name], rel=1e-3, abs=1e-4)
    for (name, ours), theirs in zip(list(graph_G.state_dict().items())
                                    + list(graph_D.state_dict().items()),
                                    list(eager_G.state_dict().values())
                                    + list(eager_D.state_dict().values())):
        if ours.is_floating_point():
            assert relative_error(ours, theirs) <= TRAINING_200_STEPS, name
        else:
            assert torch.equal(ours, theirs), name  # num_batches_tracked advanced in the graph


def test_bf16_losses_track_fp32():
    batches = cuda_batches()
    fp32, fp32_G, fp32_D = cuda_engine(cuda_graph=True, channels_last=True)
    bf16, bf16_G, bf16_D = cuda_engine(cuda_graph=True, channels_last=True, precision="bf16")
    starts = snapshot(fp32_G, fp32_D)       # tiny_networks' one seed: bf16's start too
    fp32_losses = run(fp32, batches)
    bf16_losses = run(bf16, batches, check_sync_after=WARMUP_STEPS + 1)
    for ours, theirs in zip(bf16_losses, fp32_losses):
        assert ours["G_L1"] == pytest.approx(theirs["G_L1"], rel=0.05)
        for name in ("G_GAN", "D_real", "D_fake"):
            assert ours[name] == pytest.approx(theirs[name], abs=0.1)
    # losses this loose would pass an untouched bf16 network: it must have trained as fp32 did
    assert_moved_like_the_peer((bf16_G, bf16_D), (fp32_G, fp32_D), starts)


def test_graph_replays_see_new_lr_fresh_dropout_and_advancing_batchnorm_stats():
    engine, netG, _ = cuda_engine(use_dropout=True, cuda_graph=True)
    batch = cuda_batches(1)[0]
    for _ in range(WARMUP_STEPS + 1):
        engine.step(*batch)
    assert engine._graph is not None
    engine.set_lr(0.0)
    weights = [p.detach().clone() for p in netG.parameters()]
    running_mean = netG.model.model[1].model[2].running_mean.clone()
    outputs = []
    for _ in range(2):
        engine.step(*batch)
        outputs.append(engine.last_batch()[1].clone())
    assert all(torch.equal(a, b) for a, b in zip(weights, netG.parameters()))  # lr 0 replayed
    assert not torch.equal(outputs[0], outputs[1])  # same input and weights: dropout differs
    assert not torch.equal(running_mean, netG.model.model[1].model[2].running_mean)
    engine.set_lr(2e-4)
    engine.step(*batch)
    assert not all(torch.equal(a, b) for a, b in zip(weights, netG.parameters()))


def test_fast_engine_state_round_trip_resumes_the_same_run():
    batches = cuda_batches(10)
    straight, straight_G, _ = cuda_engine(cuda_graph=True)
    run(straight, batches)
    first, first_G, first_D = cuda_engine(cuda_graph=True)
    run(first, batches[:6])
    state = first.state_dict()
    resumed, resumed_G, resumed_D = cuda_engine(cuda_graph=True)
    resumed_G.load_state_dict(first_G.state_dict())
    resumed_D.load_state_dict(first_D.state_dict())
    resumed.load_state_dict(state)
    run(resumed, batches[6:])
    assert resumed.steps == straight.steps == 10
    for ours, theirs in zip(resumed_G.parameters(), straight_G.parameters()):
        assert relative_error(ours, theirs) <= TRAINING_200_STEPS


def test_a_cpu_runs_state_resumes_on_cuda_into_a_captured_channels_last_step():
    """--device and --channels-last are not inherited: a CPU run's checkpoint (contiguous, on
    the host, plain Adam's settings) resumed by the CUDA engine keeps its fused capturable Adam,
    its step counts on the device and its moments laid out as the weights, so the graph
    captures (test_engine_resume_devices and test_engine_resume_layouts check it on a CPU)."""
    cpu = Pix2PixEngine(*tiny_networks(norm="batch", num_downs=6))
    for batch in random_batches(2, 2, size=64):
        cpu.step(*batch)
    resumed, _, _ = cuda_engine(cuda_graph=True, channels_last=True)
    resumed.load_state_dict(host_copy(cpu.state_dict()))
    run(resumed, cuda_batches(WARMUP_STEPS + 2))
    assert resumed._graph is not None
    for optimizer in (resumed.optimizer_G, resumed.optimizer_D):
        assert all(group["fused"] and group["capturable"] for group in optimizer.param_groups)
        for param, state in optimizer.state.items():
            assert state["step"].device == param.device and state["step"].dtype == torch.float32
            assert state["exp_avg"].stride() == param.stride()


def test_a_cuda_runs_state_resumes_on_a_cpu_with_the_plain_adam():
    engine, _, _ = cuda_engine(cuda_graph=True)
    run(engine, cuda_batches(WARMUP_STEPS + 2))
    cpu = Pix2PixEngine(*tiny_networks(norm="batch", num_downs=6))
    cpu.load_state_dict(host_copy(engine.state_dict()))
    for batch in random_batches(1, 2, size=64):
        cpu.step(*batch)
    for optimizer in (cpu.optimizer_G, cpu.optimizer_D):
        assert not any(group["fused"] or group["capturable"] for group in optimizer.param_groups)


def test_channels_last_engine_keeps_weights_channels_last():
    engine, netG, netD = cuda_engine(channels_last=True)
    engine.step(*cuda_batches(1)[0])
    conv = netG.model.model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert engine.last_batch()[1].is_contiguous(memory_format=torch.channels_last)
