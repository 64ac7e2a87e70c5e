"""SplitBackwardConvolution (Pix2PixEngine(split_conv_backward=True)) under a gradient penalty:
the backward that builds a graph (create_graph=True) does not split — one combined
convolution_backward on the current stream, which aten differentiates, so the new graph holds
no side-stream work — and the penalty's gradients equal the plain convolutions' (float64); the
second backward, first order, splits as before. CPU, with the stream recorder."""
import torch
import torch.nn as nn

from fastp2p.ops import split_conv_backward as split_conv
from helpers.stream_recorders import SPLIT_NODE, RecordingWgradStreams
from helpers.tolerances import FP64_SAME_MATH, assert_close


def _layers():
    torch.manual_seed(0)
    return nn.ModuleList([nn.Conv2d(3, 4, 4, 2, 1), nn.ConvTranspose2d(4, 2, 4, 2, 1)]).double()


def _penalty_grads(layers, split, streams, log_marks):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1),
                   dtype=torch.float64).requires_grad_()
    for p in layers.parameters():
        p.grad = None
    h = x
    for layer in layers:
        routed = split and split_conv.module_applies(layer, h)
        h = split_conv.module_convolution(layer, h) if routed else layer(h)
        h = torch.nn.functional.leaky_relu(h, 0.2)
    g, = torch.autograd.grad(h.square().sum(), x, create_graph=True)
    log_marks.append(len(streams.log))
    ((g.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    return [x.grad] + [p.grad for p in layers.parameters()]


def test_the_create_graph_backward_runs_combined_and_differentiable(monkeypatch):
    layers = _layers()
    streams = RecordingWgradStreams().watch(monkeypatch)
    plain = _penalty_grads(layers, False, streams, [])
    marks = []
    with split_conv.within(streams):
        split = _penalty_grads(layers, True, streams, marks)
    for i, (actual, expected) in enumerate(zip(split, plain)):
        assert actual is not None, f"gradient {i} missing"
        assert_close(actual, expected, FP64_SAME_MATH, f"penalty gradient {i}")
    # Building the graph: two combined calls on the main stream, no fork; the second backward
    # reaches the forward nodes again (first order): those split.
    assert streams.log[:marks[0]] == ["backward xxx on main"] * 2
    assert streams.log[marks[0]:] == SPLIT_NODE * 2
