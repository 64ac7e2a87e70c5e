"""What the GPU tests of the engine's default-off options (side streams, optimizer overlap,
split conv backward) each set up and check the same way: the networks and batches they train
(the 6-level U-Net and the PatchGAN at 8 features, batches of two 64x64 pairs), two trainings
equal bit for bit, the kernels of a step with their streams, and the option's benchmark peer
running."""
import copy

import torch

from helpers.train_helpers import gradients, random_batches, tiny_networks


def cuda_networks(norm="batch"):
    """(G, D) on the GPU."""
    return tuple(net.cuda() for net in tiny_networks(norm=norm, num_downs=6, ngf=8, ndf=8))


def twin_cuda_networks(norm="batch"):
    """Two identical (G, D) pairs on the GPU: one to train with the option, one without."""
    nets = cuda_networks(norm)
    return nets, tuple(copy.deepcopy(net) for net in nets)


def cuda_batches(count: int) -> list:
    """``count`` (A, B) batches on the GPU."""
    return [(a.cuda(), b.cuda()) for a, b in random_batches(count, batch_size=2, size=64)]


def assert_same_networks(option_nets, serial_nets) -> None:
    """Weights, buffers (running statistics, dropout offsets) and gradients of (G, D) trained
    with the option equal those trained without it, bit for bit."""
    (optG, optD), (netG, netD) = option_nets, serial_nets
    for (name, ours), theirs in zip(
            [*optG.named_parameters(), *optG.named_buffers(), *optD.named_parameters(),
             *optD.named_buffers()],
            [*netG.parameters(), *netG.buffers(), *netD.parameters(), *netD.buffers()],
            strict=True):
        assert torch.equal(ours, theirs), name
    for ours, theirs in zip(gradients(optG, optD), gradients(netG, netD), strict=True):
        assert torch.equal(ours, theirs)


def kernels_of_a_step(engine, real_A, real_B) -> list:
    """The profiler's CUDA kernel events of one (eager) engine step, after a first step; each
    event's ``device_resource_id`` is its stream."""
    from torch.profiler import ProfilerActivity, profile

    engine.step(real_A, real_B)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine.step(real_A, real_B)
        torch.cuda.synchronize()
    return [event for event in prof.events()
            if event.device_type == torch.autograd.DeviceType.CUDA]


def kernels_of_an_eager_bf16_step(**options) -> tuple:
    """(the engine, ``kernels_of_a_step``) of a bf16 channels-last eager engine with ``options``, on
    ``cuda_networks()`` and one of ``cuda_batches``."""
    from fastp2p.train.engine import Pix2PixEngine

    netG, netD = cuda_networks()
    engine = Pix2PixEngine(netG, netD, precision="bf16", channels_last=True, **options)
    (real_A, real_B), = cuda_batches(1)
    return engine, kernels_of_a_step(engine, real_A, real_B)


def assert_peer_runs(peer: str) -> None:
    """The benchmark peer ``peer`` trains 3 quick steps on the GPU without an error."""
    from fastp2p.bench.networks import QUICK_CONFIG
    from fastp2p.bench.peer_specs import peer_by_name
    from fastp2p.bench.runner import Runner
    from fastp2p.bench.training import TrainingSettings, training_job

    settings = TrainingSettings(QUICK_CONFIG, (2,), steps=3, warmup=5, device="cuda")
    rows = Runner(job_time_limit=120).run(training_job(peer_by_name(peer), 2, settings))
    assert rows[0]["status"] == "ok", rows[0].get("traceback")
