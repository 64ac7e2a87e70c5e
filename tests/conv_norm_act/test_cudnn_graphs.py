"""fastp2p.ops.backends.cudnn_graphs on a CPU: without the package it says "not installed"
(fastp2p imports and runs); layers the graphs do not cover are refused with their reason; and,
driven by a stand-in frontend that executes the written graphs in float64
(tests/helpers/cudnn_frontend_stand_in.py), the module's wiring and its torch math (the
statistics from the sums, their gradient folded into dy, the bias and coefficient gradients,
the variants cuDNN may decline) match conv + batch norm statistics in float64. The stand-in
proves the glue, not cuDNN: test_cudnn_graphs_cuda.py checks the real graphs on a GPU."""
import sys

import pytest
import torch
import torch.nn.functional as F

from fastp2p.ops.backends import cudnn_graphs
from helpers import cudnn_frontend_stand_in as stand_in
from helpers.cudnn_graph_poison import poison_graph_buffers
from helpers.tolerances import FP32_SINGLE_OP, assert_close

EPS = 1e-5


@pytest.fixture
def frontend(monkeypatch):
    """The stand-in as ``cudnn``, the module's caches empty, CPU tensors allowed."""
    monkeypatch.setitem(sys.modules, "cudnn", stand_in.as_module())
    monkeypatch.setattr(cudnn_graphs, "_FRONTEND", {})
    monkeypatch.setattr(cudnn_graphs, "_BUILT", {})
    monkeypatch.setattr(cudnn_graphs, "_HANDLES", {})
    monkeypatch.setattr(cudnn_graphs, "check_available", lambda device=None: None)
    monkeypatch.setattr(stand_in.pygraph, "built_graphs", [])
    monkeypatch.setattr(stand_in.pygraph, "refuse", staticmethod(lambda graph: False))
    poison_graph_buffers(monkeypatch)
    return stand_in


def test_without_the_package_it_says_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudnn", None)  # import cudnn raises ImportError
    monkeypatch.setattr(cudnn_graphs, "_FRONTEND", {})
    why = cudnn_graphs.availability()
    assert why.startswith("nvidia-cudnn-frontend is not installed") and ".whl/" in why
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(cudnn_graphs.CudnnGraphNotInstalled, match="not installed"):
        cudnn_graphs.conv_graph_norm(x, None, None, torch.randn(8, 4, 4, 4), stride=2,
                                     padding=1, norm="none")


def test_a_cpu_tensor_is_not_a_cuda_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudnn", stand_in.as_module())
    monkeypatch.setattr(cudnn_graphs, "_FRONTEND", {})
    assert cudnn_graphs.availability(torch.device("cpu")) == "cuDNN graphs need a CUDA device"


@pytest.mark.parametrize("layer, reason", [
    (dict(norm="instance"), "instance norm"),
    (dict(norm="batch", transposed=True), "transposed"),
    (dict(norm="batch", sources=2), "two sources"),
    (dict(norm="batch", dropout=True), "dropout"),
    (dict(norm="batch", activation="tanh"), "activation"),
    (dict(norm="none", per_image_coefficients=True), "instance norm"),
])
def test_layers_the_graphs_do_not_cover_are_refused_with_the_reason(layer, reason):
    with pytest.raises(cudnn_graphs.CudnnGraphUnsupported, match=reason):
        cudnn_graphs.check_layer(**layer)


def test_covered_layers_pass_the_check():
    cudnn_graphs.check_layer(norm="batch", activation="leaky_relu")
    cudnn_graphs.check_layer(norm="none", activation="none")


def _layer(normed=True, bias=True, channels=3, batch=2, side=8, out=5, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)
    x = randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
    scale = randn(channels).abs() + 0.5 if normed else None
    shift = randn(channels) if normed else None
    return x, scale, shift, randn(out, channels, 4, 4) * 0.3, randn(out) if bias else None


def _reference(x, scale, shift, weight, bias, stride, activation, norm):
    """float64: y = conv(act(x * scale + shift)) + bias, and y's batch mean and rstd."""
    z = x.double()
    if scale is not None:
        z = z * scale.double().reshape(1, -1, 1, 1) + shift.double().reshape(1, -1, 1, 1)
    if activation == "leaky_relu":
        z = F.leaky_relu(z, 0.2)
    elif activation == "relu":
        z = F.relu(z)
    y = F.conv2d(z, weight.double(), None if bias is None else bias.double(), stride=stride,
                 padding=1)
    if norm == "none":
        return y, None, None
    var, mean = torch.var_mean(y, (0, 2, 3), unbiased=False)
    return y, mean, torch.rsqrt(var + EPS)


def _leaves(tensors):
    return [None if t is None else t.detach().clone().requires_grad_() for t in tensors]


def _loss(y, mean, rstd, probe):
    """A loss reaching y directly and through both statistics."""
    loss = (y * probe).sum()
    if mean is not None:
        loss = loss + (mean * torch.arange(1.0, mean.numel() + 1, dtype=mean.dtype)).sum()
        loss = loss + (rstd * 0.5).sum()
    return loss


def _backward_of_a_default_layer(seed):
    """A stride-2 LeakyReLU batch-norm layer through ``conv_graph_norm`` and through the float64
    reference, each backpropagated from the same random probe: (inputs, reference), the leaf
    tensors [x, scale, shift, weight, bias] of each, holding their gradients."""
    x, scale, shift, weight, b = _layer()
    inputs = _leaves([x, scale, shift, weight, b])
    y, mean, rstd = cudnn_graphs.conv_graph_norm(*inputs, stride=2, padding=1, eps=EPS)
    reference = _leaves([t.double() for t in (x, scale, shift, weight, b)])
    y_ref, mean_ref, rstd_ref = _reference(*reference, 2, "leaky_relu", "batch")
    probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    _loss(y, mean, rstd, probe).backward()
    _loss(y_ref, mean_ref, rstd_ref, probe.double()).backward()
    return inputs, reference


@pytest.mark.parametrize("stride, activation, normed, norm, bias", [
    (2, "leaky_relu", True, "batch", True),    # a U-Net down conv between two batch norms
    (1, "leaky_relu", True, "batch", False),   # the PatchGAN's stride-1 conv, no bias
    (2, "leaky_relu", False, "batch", False),  # after an activation only, a norm after
    (2, "none", False, "none", True),          # the image-side conv
    (2, "relu", True, "none", True),           # a norm before, none after
])
def test_forward_and_every_gradient_match_conv_plus_batch_statistics(
        frontend, stride, activation, normed, norm, bias):
    x, scale, shift, weight, b = _layer(normed=normed, bias=bias)
    inputs = _leaves([x, scale, shift, weight, b])
    y, mean, rstd = cudnn_graphs.conv_graph_norm(
        inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], stride=stride, padding=1,
        activation=activation, norm=norm, eps=EPS)
    reference = _leaves([x.double(), *(t if t is None else t.double()
                                       for t in (scale, shift, weight, b))])
    y_ref, mean_ref, rstd_ref = _reference(*reference, stride, activation, norm)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, y_ref, FP32_SINGLE_OP, "y")
    if norm == "batch":
        assert_close(mean, mean_ref, FP32_SINGLE_OP, "mean")
        assert_close(rstd, rstd_ref, FP32_SINGLE_OP, "rstd")
    else:
        assert mean is None and rstd is None
    probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    _loss(y, mean, rstd, probe.float()).backward()
    _loss(y_ref, mean_ref, rstd_ref, probe.double()).backward()
    for name, got, want in zip(("x", "scale", "shift", "weight", "bias"), inputs, reference):
        if got is not None:
            assert_close(got.grad, want.grad, FP32_SINGLE_OP, f"grad {name}")


def test_the_graphs_written_are_the_fused_ones(frontend):
    """Forward: scale, bias (shift), relu with the slope, conv, the conv bias, genstats in one
    graph; dgrad: the activation backward, the two reductions of the norm's backward and the
    scale after conv_dgrad; wgrad: the prologue before conv_wgrad."""
    inputs = _leaves(_layer())
    y, mean, rstd = cudnn_graphs.conv_graph_norm(*inputs, stride=2, padding=1)
    _loss(y, mean, rstd, torch.ones_like(y)).backward()
    ops = [[node.op for node in graph.nodes] for graph in frontend.pygraph.built_graphs]
    assert ops == [
        ["scale", "bias", "relu", "conv_fprop", "bias", "genstats"],
        ["conv_dgrad", "scale", "bias", "relu_backward", "mul", "reduction", "reduction",
         "scale"],
        ["scale", "bias", "relu", "conv_wgrad"],
    ]
    assert frontend.pygraph.built_graphs[0].nodes[2].params["slope"] == 0.2
    described = cudnn_graphs.describe(inputs[0].shape, inputs[3].shape)
    assert described == ("forward: scale/shift float32; dgrad+dz: scale/shift float32; "
                         "wgrad: scale/shift float32")


def test_declined_variants_fall_back_to_torch_for_the_bias_and_statistics(frontend):
    """cuDNN declining genstats (as its planner does in bf16): the forward graph built keeps
    the prologue and the bias, torch adds the statistics, and the results still match."""
    frontend.pygraph.refuse = staticmethod(
        lambda graph: "genstats" in [node.op for node in graph.nodes])
    x, scale, shift, weight, b = _layer()
    y, mean, rstd = cudnn_graphs.conv_graph_norm(x, scale, shift, weight, b, stride=2,
                                                 padding=1, eps=EPS)
    y_ref, mean_ref, rstd_ref = _reference(x, scale, shift, weight, b, 2, "leaky_relu",
                                           "batch")
    assert_close(y, y_ref, FP32_SINGLE_OP, "y")
    assert_close(mean, mean_ref, FP32_SINGLE_OP, "mean")
    assert_close(rstd, rstd_ref, FP32_SINGLE_OP, "rstd")
    assert cudnn_graphs.describe(x.shape, weight.shape) == \
        "forward: scale/shift float32, statistics by torch"


def test_the_bias_added_by_torch_corrects_the_sums(frontend):
    frontend.pygraph.refuse = staticmethod(
        lambda graph: [node.op for node in graph.nodes].count("bias") > 1)  # no conv bias
    x, scale, shift, weight, b = _layer()
    y, mean, rstd = cudnn_graphs.conv_graph_norm(x, scale, shift, weight, b, stride=2,
                                                 padding=1, eps=EPS)
    _, mean_ref, rstd_ref = _reference(x, scale, shift, weight, b, 2, "leaky_relu", "batch")
    assert_close(mean, mean_ref, FP32_SINGLE_OP, "mean")
    assert_close(rstd, rstd_ref, FP32_SINGLE_OP, "rstd")
    assert "bias by torch" in cudnn_graphs.describe(x.shape, weight.shape)


def test_a_graph_no_engine_takes_is_unsupported_once_with_the_reasons(frontend):
    frontend.pygraph.refuse = staticmethod(lambda graph: True)
    x, scale, shift, weight, b = _layer()
    for _ in range(2):
        with pytest.raises(cudnn_graphs.CudnnGraphUnsupported,
                           match="forward graph: cuDNN has no engine"):
            cudnn_graphs.conv_graph_norm(x, scale, shift, weight, b, stride=2, padding=1)
    assert len(cudnn_graphs._BUILT) == 1  # planned once, the refusal cached
    assert cudnn_graphs.describe(x.shape, weight.shape) == "forward: unsupported"


def test_running_statistics_are_updated_like_batch_norms(frontend):
    x, scale, shift, weight, b = _layer()
    running_mean, running_var = torch.zeros(5), torch.ones(5)
    y, _, _ = cudnn_graphs.conv_graph_norm(x, scale, shift, weight, b, stride=2, padding=1,
                                           running_mean=running_mean,
                                           running_var=running_var, momentum=0.1)
    norm = torch.nn.BatchNorm2d(5, momentum=0.1).train()
    norm(y.detach().double().float())
    assert_close(running_mean, norm.running_mean, FP32_SINGLE_OP, "running mean")
    assert_close(running_var, norm.running_var, FP32_SINGLE_OP, "running var")


def test_scale_without_shift_is_refused(frontend):
    x, scale, _, weight, _ = _layer()
    with pytest.raises(ValueError, match="scale and shift together"):
        cudnn_graphs.conv_graph_norm(x, scale, None, weight, stride=2, padding=1)


def test_a_declined_wgrad_prologue_is_written_by_torch(frontend):
    """cuDNN's planner declines wgrad with the scale/shift/activation prologue in bf16: the
    plain wgrad graph reads act(x * scale + shift) written by torch; the gradient matches."""
    frontend.pygraph.refuse = staticmethod(lambda graph: [node.op for node in graph.nodes]
                                           == ["scale", "bias", "relu", "conv_wgrad"])
    inputs, reference = _backward_of_a_default_layer(seed=2)
    assert_close(inputs[3].grad, reference[3].grad, FP32_SINGLE_OP, "grad weight")
    assert "wgrad: scale/shift io, prologue by torch" in cudnn_graphs.describe(inputs[0].shape,
                                                                               inputs[3].shape)


def test_declined_backward_reductions_are_left_to_torch(frontend):
    """dgrad with the reductions of the norm's backward declined: the graph writes dz and
    torch reduces it; the gradients of scale and shift still match."""
    frontend.pygraph.refuse = staticmethod(
        lambda graph: "reduction" in [node.op for node in graph.nodes])
    inputs, reference = _backward_of_a_default_layer(seed=3)
    for index, name in ((0, "x"), (1, "scale"), (2, "shift")):
        assert_close(inputs[index].grad, reference[index].grad, FP32_SINGLE_OP, f"grad {name}")
    assert "dgrad+dz: scale/shift float32, reductions by torch" in cudnn_graphs.describe(
        inputs[0].shape, inputs[3].shape)
