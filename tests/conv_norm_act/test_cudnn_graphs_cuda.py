"""The cuDNN fusion graphs (fastp2p.ops.backends.cudnn_graphs) on a GPU, bf16, random data:
y, its batch mean and rstd, the running statistics' update and the gradients of x, scale, shift,
weight and bias against conv + batch-norm statistics in float64 from the same bf16 inputs,
within DESIGN section 5's bf16 bound (one layer at a slope, eps and momentum other than the
defaults); every buffer the module allocates is poisoned with NaN, so an element cuDNN did not
write fails. Also a CUDA-graph capture and replay of the forward (how the benchmark times it).
Skipped without nvidia-cudnn-frontend (benchmarks/README.md: carry its wheel in .whl/); a
layer cuDNN has no engine for in any variant is skipped with cuDNN's reason, which the
benchmark records as "unsupported" too."""
import pytest
import torch
import torch.nn.functional as F

from fastp2p.ops.backends import cudnn_graphs
from helpers.cudnn_graph_poison import poison_graph_buffers
from helpers.norm_act_cases import OTHERS
from helpers.tolerances import BF16_NETWORK, assert_close

pytestmark = pytest.mark.cuda
DTYPE = torch.bfloat16
# The LeakyReLU slope, the statistics' eps and the running statistics' momentum of a layer:
# conv_graph_norm's defaults, replaced by a layer's settings. OTHERS (slope 0.05, eps 0.5,
# momentum 0.3) cannot be matched by a graph that used the defaults: eps 0.5 moves rstd by
# about 11% against that layer's output variances of 1.7 to 2.5 (BF16_NETWORK: 2%).
DEFAULTS = dict(slope=0.2, eps=1e-5, momentum=0.1)

LAYERS = {  # N, C, H, K, stride, activation, normed, norm after, bias, settings
    "down-bn-both-sides": (4, 64, 32, 128, 2, "leaky_relu", True, "batch", True, OTHERS),
    "patchgan-stride1": (4, 64, 16, 128, 1, "leaky_relu", True, "batch", False, {}),
    "act-only-then-bn": (4, 32, 32, 64, 2, "leaky_relu", False, "batch", False, {}),
    "image-side": (4, 3, 32, 64, 2, "none", False, "none", True, {}),
    "bn-before-only": (2, 64, 8, 64, 2, "relu", True, "none", True, {}),
}


@pytest.fixture(autouse=True)
def frontend(monkeypatch):
    why = cudnn_graphs.availability(torch.device("cuda"))
    if why is not None:
        pytest.skip(why)

    poison_graph_buffers(monkeypatch)


def _inputs(n, c, h, k, normed, bias):
    gen = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda")
    x = randn(n, c, h, h).to(DTYPE).contiguous(memory_format=torch.channels_last)
    scale = randn(c).abs() + 0.5 if normed else None
    shift = randn(c) if normed else None
    weight = (randn(k, c, 4, 4) * 0.05).to(DTYPE)
    return [x, scale, shift, weight, randn(k).to(DTYPE) if bias else None]


def _leaves(tensors, dtype=None):
    return [None if t is None else (t.to(dtype) if dtype else t).detach().requires_grad_()
            for t in tensors]


def _reference(x, scale, shift, weight, bias, stride, activation, norm, settings):
    z = x
    if scale is not None:
        z = z * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
    z = {"leaky_relu": lambda t: F.leaky_relu(t, settings["slope"]), "relu": F.relu,
         "none": lambda t: t}[activation](z)
    y = F.conv2d(z, weight, bias, stride=stride, padding=1)
    if norm == "none":
        return y, None, None
    var, mean = torch.var_mean(y, (0, 2, 3), unbiased=False)
    return y, mean, torch.rsqrt(var + settings["eps"])


def _loss(y, mean, rstd, probe):
    loss = (y.to(probe.dtype) * probe).sum()
    if mean is not None:
        loss = loss + (mean.to(probe.dtype) * 0.1).sum() + (rstd.to(probe.dtype) * 0.1).sum()
    return loss


def _run(inputs, stride, activation, norm, settings, running=(None, None)):
    try:
        return cudnn_graphs.conv_graph_norm(*inputs, stride=stride, padding=1,
                                            activation=activation, norm=norm,
                                            running_mean=running[0], running_var=running[1],
                                            **settings)
    except cudnn_graphs.CudnnGraphUnsupported as error:
        pytest.skip(f"cuDNN has no engine: {error}")


@pytest.mark.parametrize("name", list(LAYERS))
def test_bf16_forward_statistics_and_gradients_match_float64(name):
    """Also the running statistics' update from (0, 1), as nn.BatchNorm2d's."""
    n, c, h, k, stride, activation, normed, norm, bias, settings = LAYERS[name]
    settings = dict(DEFAULTS, **settings)
    tensors = _inputs(n, c, h, k, normed, bias)
    inputs = _leaves(tensors)
    running = (torch.zeros(k, device="cuda"), torch.ones(k, device="cuda"))
    y, mean, rstd = _run(inputs, stride, activation, norm, settings, running)
    reference = _leaves(tensors, torch.float64)
    y_ref, mean_ref, rstd_ref = _reference(*reference, stride, activation, norm, settings)
    assert_close(y, y_ref, BF16_NETWORK, "y")
    if norm == "batch":
        assert_close(mean, mean_ref, BF16_NETWORK, "mean")
        assert_close(rstd, rstd_ref, BF16_NETWORK, "rstd")
        unbiased_var = torch.var(y_ref.detach(), (0, 2, 3))
        momentum = settings["momentum"]
        assert_close(running[0], momentum * mean_ref, BF16_NETWORK, "running_mean")
        assert_close(running[1], 1 - momentum + momentum * unbiased_var, BF16_NETWORK,
                     "running_var")
    probe = torch.randn(y.shape, device="cuda", generator=torch.Generator(device="cuda")
                        .manual_seed(1))
    try:
        _loss(y, mean, rstd, probe).backward()
    except cudnn_graphs.CudnnGraphUnsupported as error:
        pytest.skip(f"forward checked; cuDNN has no engine for the backward: {error}")
    _loss(y_ref, mean_ref, rstd_ref, probe.double()).backward()
    for label, got, want in zip(("x", "scale", "shift", "weight", "bias"), inputs, reference):
        if got is not None:
            assert_close(got.grad, want.grad, BF16_NETWORK, f"grad {label}")
    print(name, cudnn_graphs.describe(tensors[0].shape, tensors[3].shape))


def test_the_forward_replays_in_a_cuda_graph():
    n, c, h, k, stride, activation, normed, norm, bias, settings = LAYERS["down-bn-both-sides"]
    settings = dict(DEFAULTS, **settings)
    inputs = _inputs(n, c, h, k, normed, bias)
    with torch.no_grad():
        eager = _run(inputs, stride, activation, norm, settings)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                _run(inputs, stride, activation, norm, settings)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = _run(inputs, stride, activation, norm, settings)
        for t in captured:
            t.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
    for got, want, label in zip(captured, eager, ("y", "mean", "rstd")):
        # the dtype's default tolerance: genstats may sum in another order
        torch.testing.assert_close(got, want, msg=f"replayed {label}")
