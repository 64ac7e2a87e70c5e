"""The fused convolutions whose backward has no differentiable form — ``conv_norm_act`` (the
Triton fused conv, opt-in FASTP2P_CONV=fused or a committed table) and ``conv_graph_norm`` (cuDNN
graphs, driven here by the CPU stand-in frontend) — refuse a backward that builds a graph
(create_graph=True, a gradient penalty) with one error naming what to turn off, instead of
handing back constant gradients; their first-order backward still runs. Before the fix both
returned gradients whose second derivatives were silently missing."""
import sys

import pytest
import torch

from fastp2p.ops.backends import cudnn_graphs
from helpers import cudnn_frontend_stand_in as stand_in
from helpers.triton_interpreter import KERNELS


def _penalty_then_backward(x, outputs):
    """A gradient penalty's two backwards through ``outputs`` (a function of x)."""
    y = outputs(x)
    g, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    g.square().sum().backward()


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
def test_conv_norm_act_refuses_create_graph():
    from fastp2p.kernels.conv_fused_types import InputTransform
    from fastp2p.ops.conv_norm_act import conv_norm_act
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen).requires_grad_()
    weight = (torch.randn(4, 3, 4, 4, generator=gen) * 0.3).requires_grad_()

    def outputs(x):
        return conv_norm_act([x], [InputTransform()], weight, None, stride=2, padding=1,
                             norm="instance")[0]

    with pytest.raises(RuntimeError, match="FASTP2P_CONV=module"):
        _penalty_then_backward(x, outputs)
    outputs(x).square().sum().backward()  # first order: unchanged
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.fixture
def frontend(monkeypatch):
    """The stand-in as ``cudnn``, the module's caches empty, CPU tensors allowed."""
    monkeypatch.setitem(sys.modules, "cudnn", stand_in.as_module())
    for cache in ("_FRONTEND", "_BUILT", "_HANDLES"):
        monkeypatch.setattr(cudnn_graphs, cache, {})
    monkeypatch.setattr(cudnn_graphs, "check_available", lambda device=None: None)
    monkeypatch.setattr(stand_in.pygraph, "built_graphs", [])
    monkeypatch.setattr(stand_in.pygraph, "refuse", staticmethod(lambda graph: False))
    return stand_in


def test_conv_graph_norm_refuses_create_graph(frontend):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    scale, shift = torch.rand(3, generator=gen) + 0.5, torch.randn(3, generator=gen)
    weight = (torch.randn(5, 3, 4, 4, generator=gen) * 0.3).requires_grad_()

    def outputs(x):
        return cudnn_graphs.conv_graph_norm(x, scale, shift, weight, stride=2, padding=1)[0]

    with pytest.raises(RuntimeError, match="cuDNN graphs.*create_graph=True"):
        _penalty_then_backward(x, outputs)
    outputs(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
