"""Pix2PixEngine(split_conv_backward=True) on a CPU: refused with clear errors; and the step run
with a recorder in place of the CUDA wgrad streams (the seam the option fills on a GPU): every
convolution that wants both gradients splits its backward (wgrad on the side stream between a
fork and a join, dgrad on the main stream), the others and everything outside the step run as
before, and the result is the option-off step's bit for bit (losses, weights, gradients,
buffers, optimizer state). The op-level checks are test_split_conv_backward.py; the GPU check
is test_engine_split_conv_backward_cuda.py."""
import copy

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from fastp2p.ops import split_conv_backward as split_conv
from fastp2p.train.engine import Pix2PixEngine, _check_single_process
from helpers.stream_recorders import RecordingStreams, RecordingWgradStreams
from helpers.train_helpers import gradients, loss_curve, random_batches, tiny_networks
from helpers.triton_interpreter import KERNELS

STEPS = 3
# Split nodes per step (U-Net num_downs 5, PatchGAN n_layers 2): D step, 3 of D's 4 convolutions
# per pair (its first one's input, the image pair, wants no gradient); G step, 9 of G's 10 (its
# first one reads the image) and none of the frozen D's (no weight gradient).
SPLITS_PER_STEP = 2 * 3 + 9


def _state(*nets):
    return [t.detach().clone() for net in nets for t in (*net.parameters(), *net.buffers())]


def _optimizer_state(engine):
    return [value for optimizer in (engine.optimizer_G, engine.optimizer_D)
            for state in optimizer.state_dict()["state"].values() for value in state.values()]


def _split_nodes(log):
    """The log cut into split nodes, each checked to be a fork, the wgrad on the side stream,
    the dgrad on the main stream, then a join handing back the wgrad tensors."""
    assert len(log) % 4 == 0, log
    nodes = [log[i:i + 4] for i in range(0, len(log), 4)]
    for fork, wgrad, dgrad, join in nodes:
        assert fork == "fork" and dgrad == "backward x-- on main"
        assert wgrad in ("backward -xx on side", "backward -x- on side")
        assert join == f"join {2 if wgrad.endswith('-xx on side') else 1}"
    return nodes


def test_split_conv_backward_is_refused_on_a_cpu():
    with pytest.raises(ValueError, match="^split_conv_backward=True needs the networks on a "
                                         "CUDA device, they are on cpu; use "
                                         "split_conv_backward=False$"):
        Pix2PixEngine(*tiny_networks(), split_conv_backward=True)


def test_split_conv_backward_is_refused_with_distributed_data_parallel():
    """The engine's check, as it runs for a CUDA engine (no process group needed to see it)."""
    wrapped = object.__new__(DistributedDataParallel)
    with pytest.raises(ValueError, match="^split_conv_backward=True is not supported with "
                                         "DistributedDataParallel; use "
                                         "split_conv_backward=False for multi-process"):
        _check_single_process("split_conv_backward", "", wrapped)


@pytest.mark.parametrize("side_streams", [False, True], ids=["", "side-streams"])
@pytest.mark.parametrize("fused_step_losses", [False, True], ids=["losses", "fused-losses"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_recorded_split_step_is_the_plain_step(one_thread, monkeypatch, norm, fused_step_losses,
                                               side_streams):
    batches = random_batches(STEPS, batch_size=2, size=32)
    netG, netD = tiny_networks(norm=norm)
    splitG, splitD = copy.deepcopy(netG), copy.deepcopy(netD)
    plain = Pix2PixEngine(netG, netD, fused_step_losses=fused_step_losses)
    split = Pix2PixEngine(splitG, splitD, fused_step_losses=fused_step_losses)
    recorder = split._wgrad_streams = RecordingWgradStreams().watch(monkeypatch)
    if side_streams:  # composed with the side_streams seam (its own recorder)
        split._streams = RecordingStreams()

    expected = loss_curve(plain, batches)
    got = loss_curve(split, batches)

    assert len(_split_nodes(recorder.log)) == STEPS * SPLITS_PER_STEP
    assert split_conv._active is None  # only inside the step
    assert torch.equal(got, expected)
    for ours, theirs in zip(_state(splitG, splitD), _state(netG, netD), strict=True):
        assert torch.equal(ours, theirs)  # weights and BatchNorm running statistics
    for ours, theirs in zip(gradients(splitG, splitD), gradients(netG, netD), strict=True):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(_optimizer_state(split), _optimizer_state(plain), strict=True):
        assert torch.equal(ours, theirs)  # Adam's moments and step counts


def test_forwards_outside_the_step_are_unchanged(one_thread, monkeypatch):
    """After split steps: G's inference, and a user's forward and backward with gradients,
    issue nothing on the wgrad streams and build no split node."""
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    recorder = engine._wgrad_streams = RecordingWgradStreams().watch(monkeypatch)
    loss_curve(engine, random_batches(1))
    recorder.log.clear()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        netG.eval()(image)
    netG.train()
    out = netG(image.requires_grad_())
    assert not any(type(node).__name__.startswith("SplitBackwardConvolution")
                   for node in _graph_nodes(out.grad_fn))
    out.sum().backward()
    assert recorder.log == []


def _graph_nodes(node, seen=None):
    seen = set() if seen is None else seen
    if node is None or node in seen:
        return seen
    seen.add(node)
    for next_node, _ in node.next_functions:
        _graph_nodes(next_node, seen)
    return seen


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
def test_fused_convolutions_keep_their_own_backward(monkeypatch):
    """FASTP2P_CONV=fused (every U-Net layer through the fused convolution, whose autograd is
    its own): inside the split context nothing is split, the fused launches run."""
    from helpers.network_checks import count_fused_convs

    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    netG, _ = tiny_networks()
    calls = count_fused_convs(monkeypatch, KERNELS)
    recorder = RecordingWgradStreams().watch(monkeypatch)
    with split_conv.within(recorder):
        out = netG(torch.rand(1, 3, 32, 32))
    out.sum().backward()
    assert calls[0] == 10
    assert recorder.log == []
    assert all(p.grad is not None for p in netG.parameters())


def test_each_branch_stream_gets_its_own_wgrad_stream(monkeypatch):
    """WgradSideStreams' choice, with stand-ins for CUDA streams: a node on side_streams' real-pair
    stream forks into a wgrad stream of its own, a node on any other stream (the step's, the
    warm-up's or the capture's) into the main one; the same stream each time."""
    from types import SimpleNamespace

    from fastp2p.train import wgrad_streams

    monkeypatch.setattr(wgrad_streams, "SideStream", lambda device: object())
    current = SimpleNamespace(cuda_stream=1)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: current)
    real_pair = SimpleNamespace(cuda_stream=2)
    streams = wgrad_streams.WgradSideStreams(torch.device("cuda", 0), (real_pair,))
    main = streams.for_current_stream()
    assert streams.for_current_stream() is main
    current.cuda_stream = 2
    branch = streams.for_current_stream()
    assert branch is not main and streams.for_current_stream() is branch
    current.cuda_stream = 3
    assert streams.for_current_stream() is main
