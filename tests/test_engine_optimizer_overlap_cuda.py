"""Pix2PixEngine(optimizer_overlap=True) on a GPU against the same engine without it (both with
master_weights=True), from the same weights and batches, 10 steps: the captured bf16 step (warm-up
steps, the capture with the hooks' launches recorded once, replays), the same with side streams
and fused step losses, and the eager fp32 step. Tolerance: none. Adam is elementwise, so each
bucket's launch computes exactly what the one launch computed for its slice, and everything else
runs the same kernels on the same data: losses, weights, moments, gradients and running
statistics must be equal bit for bit. A difference would be a race (an update issued before its
gradients were final or joined after a read), not rounding. The CPU tests of the issue order
are test_engine_optimizer_overlap.py."""

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
    "bf16-graph-side-streams-fused-losses": dict(precision="bf16", channels_last=True,
                                                 cuda_graph=True, side_streams=True,
                                                 fused_step_losses=True),
    "fp32-eager": dict(precision="fp32"),
}


def _moments(engine):
    """Each parameter's moments, by network and parameter order (``opt.state`` iterates in
    the bucket layout, which the option changes)."""
    return [opt.state[param][key]
            for opt, net in ((engine.optimizer_G, engine.netG), (engine.optimizer_D, engine.netD))
            for param in net.parameters() for key in ("exp_avg", "exp_avg_sq")]


@pytest.mark.parametrize("case, norm", [("bf16-graph", "batch"), ("bf16-graph", "instance"),
                                        ("bf16-graph-side-streams-fused-losses", "batch"),
                                        ("fp32-eager", "batch")])
def test_overlapped_updates_train_exactly_as_the_serial_step(monkeypatch, case, norm):
    force_backend(monkeypatch, "triton")
    assert STEPS > WARMUP_STEPS + 1  # eager warm-up steps, the capture, then replays
    (netG, netD), (overG, overD) = twin_cuda_networks(norm)
    batches = cuda_batches(STEPS)

    serial = Pix2PixEngine(netG, netD, master_weights=True, **CASES[case])
    expected = loss_curve(serial, batches)
    overlapped = Pix2PixEngine(overG, overD, master_weights=True, optimizer_overlap=True,
                               **CASES[case])
    got = loss_curve(overlapped, batches)

    if CASES[case].get("cuda_graph"):
        assert overlapped._graph is not None  # the last steps were replays
    assert len(overlapped.optimizer_G.bucket_params) > 1
    assert torch.isfinite(got).all()
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert_same_networks((overG, overD), (netG, netD))
    for ours, theirs in zip(_moments(overlapped), _moments(serial), strict=True):
        assert torch.equal(ours, theirs)
    assert overlapped.optimizer_G.steps == overlapped.optimizer_D.steps == STEPS


def test_an_eager_overlapped_step_runs_adam_on_a_second_stream(monkeypatch):
    """What the profile of benchmarks/profile_step.py --optimizer-overlap shows: the Adam
    launches, one per bucket, on a stream of their own."""
    monkeypatch.setenv("FASTP2P_BACKEND", "triton")
    engine, kernels = kernels_of_an_eager_bf16_step(master_weights=True, optimizer_overlap=True)
    adam = [event for event in kernels if "adam" in event.name]
    buckets = len(engine.optimizer_G.bucket_params) + len(engine.optimizer_D.bucket_params)
    assert len(adam) == buckets
    adam_streams = {event.device_resource_id for event in adam}
    adam_ids = {id(event) for event in adam}
    other_streams = {event.device_resource_id for event in kernels if id(event) not in adam_ids}
    assert len(adam_streams) == 1 and not adam_streams & other_streams


def test_the_optimizer_overlap_peer_runs():
    assert_peer_runs("fastp2p-optimizer-overlap")
