"""Pix2PixEngine(split_conv_backward=True) on a GPU against the same engine without it, from the
same weights and batches, for 10 steps: the captured bf16 channels-last step (batch and
instance norm), the eager fp32 step, the eager bf16 step with master weights (no weight casts,
so autocast's cast cache plays no part: fastp2p.ops.split_conv_backward), and the captured step
with every other option composed (master_weights, fused_step_losses, side_streams,
optimizer_overlap). Tolerance: none. cuDNN's combined backward is the data-gradient call then
the weight-gradient call; the split issues the same two calls on two streams, cuDNN held to
its deterministic algorithms, so losses, weights, gradients, BatchNorm running statistics and
optimizer state must be equal bit for bit. A difference would be a race (a missing event or
record_stream), not rounding. The CPU tests of the structure are
test_engine_split_conv_backward.py and test_split_conv_backward.py."""

import pytest
import torch

from fastp2p.train.engine import WARMUP_STEPS, Pix2PixEngine
from helpers.engine_option_checks import (assert_peer_runs, assert_same_networks,
                                         cuda_batches, kernels_of_an_eager_bf16_step,
                                         twin_cuda_networks)
from helpers.forced_backend import force_backend
from helpers.train_helpers import loss_curve

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("deterministic_cudnn")]
STEPS = 10

CASES = {
    "bf16-graph": dict(precision="bf16", channels_last=True, cuda_graph=True),
    "fp32-eager": dict(precision="fp32"),
    "bf16-eager-master": dict(precision="bf16", channels_last=True, master_weights=True),
    "bf16-graph-all-options": dict(precision="bf16", channels_last=True, cuda_graph=True,
                                   master_weights=True, fused_step_losses=True,
                                   side_streams=True, optimizer_overlap=True),
}


def _train(netG, netD, batches, options):
    engine = Pix2PixEngine(netG, netD, **options)
    curve = loss_curve(engine, batches)
    if options.get("cuda_graph"):
        assert engine._graph is not None  # the last steps were replays
    return curve, [t for optimizer in (engine.optimizer_G, engine.optimizer_D)
                   for t in _optimizer_tensors(optimizer)]


def _optimizer_tensors(optimizer):
    """The state's tensors (torch.optim.Adam's per parameter, MasterWeightsAdam's packed), and
    MasterWeightsAdam's float32 masters."""
    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from tensors(item)
    yield from tensors(optimizer.state_dict()["state"])
    if hasattr(optimizer, "master"):
        yield optimizer.master


@pytest.mark.parametrize("case, norm", [
    ("bf16-graph", "batch"), ("bf16-graph", "instance"), ("fp32-eager", "batch"),
    ("bf16-eager-master", "batch"), ("bf16-graph-all-options", "batch")])
def test_split_conv_backward_trains_exactly_as_the_plain_step(monkeypatch, case, norm):
    force_backend(monkeypatch, "triton")
    assert STEPS > WARMUP_STEPS + 1  # eager warm-up steps, the capture, then replays
    (netG, netD), (splitG, splitD) = twin_cuda_networks(norm)
    batches = cuda_batches(STEPS)

    expected, expected_state = _train(netG, netD, batches, CASES[case])
    got, got_state = _train(splitG, splitD, batches, dict(CASES[case], split_conv_backward=True))

    assert torch.isfinite(got).all()
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert_same_networks((splitG, splitD), (netG, netD))
    for ours, theirs in zip(got_state, expected_state, strict=True):
        assert torch.equal(ours, theirs)  # Adam's moments and step counts


def test_an_eager_split_step_runs_weight_gradients_on_another_stream(monkeypatch):
    """What the profile of benchmarks/profile_step.py --split-conv-backward shows: the
    convolutions' weight-gradient kernels on a stream of their own."""
    monkeypatch.setenv("FASTP2P_BACKEND", "triton")
    _, kernels = kernels_of_an_eager_bf16_step(split_conv_backward=True)
    streams = {event.device_resource_id for event in kernels}
    assert len(streams) >= 2, streams


def test_the_split_conv_backward_peer_runs():
    assert_peer_runs("fastp2p-split-conv-backward")
