"""Pix2PixEngine(side_streams=True) on a GPU against the same engine without it, from the same
weights and batches: the captured bf16 step and the eager fp32 step, with D's fork at the top of
the step (instance norm: D keeps no state) and after its fake-pair forward (batch norm), for 10
steps. Tolerance: none. Both sides run the same kernels on the same data in the same order on
each stream, cuDNN is held to its deterministic algorithms, and the only sums whose order the
second stream can change have two terms (each D parameter's gradient from the fake and the
real pair; fake_B's from the G step's GAN and L1 terms), and a + b == b + a in floating point:
so losses, weights, gradients and BatchNorm running statistics must be equal bit for bit. A
difference would be a race (a missing event or record_stream), not rounding. The CPU test of
the stream structure is test_engine_side_streams.py."""

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


def _train(netG, netD, batches, options):
    engine = Pix2PixEngine(netG, netD, **options)
    curve = loss_curve(engine, batches)
    if options.get("cuda_graph"):
        assert engine._graph is not None  # the last steps were replays
    return curve


CASES = {
    "bf16-graph": dict(precision="bf16", channels_last=True, cuda_graph=True),
    "fp32-eager": dict(precision="fp32"),
    "bf16-graph-master-fused-losses": dict(precision="bf16", channels_last=True,
                                           cuda_graph=True, master_weights=True,
                                           fused_step_losses=True),
}


# batch norm: the fork after D's fake-pair forward; instance norm: at the top of the step. The
# options composed once, with batch norm's fork (the one the default PatchGAN takes).
@pytest.mark.parametrize("case, norm", [
    ("bf16-graph", "batch"), ("bf16-graph", "instance"), ("fp32-eager", "batch"),
    ("fp32-eager", "instance"), ("bf16-graph-master-fused-losses", "batch")])
def test_side_streams_train_exactly_as_the_serial_step(monkeypatch, case, norm):
    force_backend(monkeypatch, "triton")
    assert STEPS > WARMUP_STEPS + 1  # eager warm-up steps, the capture, then replays
    (netG, netD), (sideG, sideD) = twin_cuda_networks(norm)
    batches = cuda_batches(STEPS)

    expected = _train(netG, netD, batches, CASES[case])
    got = _train(sideG, sideD, batches, dict(CASES[case], side_streams=True))

    assert torch.isfinite(got).all()
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert_same_networks((sideG, sideD), (netG, netD))


def test_an_eager_side_stream_step_runs_kernels_on_two_streams(monkeypatch):
    """What the profile of benchmarks/profile_step.py --side-streams shows per stream."""
    monkeypatch.setenv("FASTP2P_BACKEND", "triton")
    _, kernels = kernels_of_an_eager_bf16_step(side_streams=True)
    streams = {event.device_resource_id for event in kernels}
    assert len(streams) >= 2, streams


def test_the_side_streams_peer_runs():
    assert_peer_runs("fastp2p-side-streams")
