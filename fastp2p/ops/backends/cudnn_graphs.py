"""cuDNN runtime-fusion graphs (package ``nvidia-cudnn-frontend``, imported lazily) for the
networks' forward convolutions: a third provider beside the fused Triton convolution
(``fastp2p.ops.conv_norm_act``) and cuDNN conv + the norm-act kernels, timed per layer by
``benchmarks/conv_layer_timing.py`` (issue 16 item 3). No network routes to it: it is measured,
not used (no GPU has run it yet). fastp2p imports and works without the package.

One layer is ``y = conv(act(x * scale + shift), weight) + bias`` with the statistics of y for
the batch norm after it. Graphs, built once per shape (cached with their refusals):
- forward: conv_fprop of the NHWC input with the previous norm's scale/shift and the
  activation (LeakyReLU or ReLU) as its prologue, the bias and a genstats epilogue
  (per-channel float32 sum and sum of squares of y; mean and rstd are tiny torch ops on them,
  var = E[y^2] - mean^2, so a channel whose mean dwarfs its spread loses digits that the fused
  Triton convolution's Welford merge keeps);
- dgrad: conv_dgrad with the activation's backward and the prologue's scale in its epilogue,
  recomputing z = x * scale + shift from the saved pre-norm x: dx = scale * act'(z) * dgrad(dy);
- wgrad: conv_wgrad whose image operand is act(x * scale + shift), recomputed in its prologue.
The gradient reaching y through the statistics (d sum: + g, d sumsq: + 2 y g) is added to dy by
torch (one elementwise pass), the bias gradient is a torch sum, and the gradients of scale and
shift (when they need one) are two per-channel reduction nodes of the dgrad graph, sum dz and
sum dz * x with dz = act'(z) * dgrad(dy) (dbn_weight's reductions: the frontend's Python API
has no dbn_weight node, its C++ API has), or, where cuDNN declines those, torch's reductions
of dz written by the graph.

Each graph (written by ``cudnn_graph_writer``) is tried in variants until cuDNN builds one
(``Variant``): scale/shift and the virtual intermediates in float32, then in the input's dtype;
for the forward, then with the bias and then also the statistics left to torch (a pass over y
each), so a layer whose full fusion cuDNN declines still gets its fused prologue; for wgrad,
last, a plain wgrad reading act(x * scale + shift) written by torch. ``describe()`` says which
variant each graph of a shape got (the benchmark records it with the timings).

Not built (``CudnnGraphUnsupported``): instance norm (genstats gives batch statistics only,
and the prologue's scale would be per image), transposed convolutions (their cuDNN form is a
dgrad, which takes no prologue on its input), two sources (the decoder's skip and up
tensors), dropout in the prologue. A graph cuDNN has no engine for in any variant raises
``CudnnGraphUnsupported`` with cuDNN's reasons.

Written against nvidia-cudnn-frontend 1.32's Python API (``cudnn.pygraph``). What is known
without a GPU (cuDNN 9.28.1's planner on this code's graphs, asked for a hand-described sm_90
device through a stub driver; heuristics only, nothing compiled or run): in bf16 the forward
with genstats found no engine in any variant (genstats wants a float32 input), the forward
with the statistics left to torch did (scale/shift in bf16), dgrad + act' + scale did, and
wgrad with the prologue did not (cuDNN knows the pattern, SCALE_BIAS_ADD_RELU_WGRAD, in fp16
only) while the plain wgrad did, as did dgrad + act' + scale with both reductions; a layer
with no prologue and no statistics planned every graph.
"""
from contextlib import nullcontext
from typing import Optional

import torch

from fastp2p.fork_safe import ForkSafeLock
from fastp2p.ops.backends.cudnn_graph_writer import (KINDS, Built, CudnnGraphNotInstalled,
                                                     CudnnGraphUnavailable,
                                                     CudnnGraphUnsupported, GraphWriter,
                                                     LayerKey, Variant)
from fastp2p.ops.definitions import refuse_graph_of_backward

NOT_INSTALLED = ("nvidia-cudnn-frontend is not installed (pip install nvidia-cudnn-frontend; on "
                 "the GPU machine, carry its wheel in .whl/: benchmarks/README.md)")
ACTIVATIONS = ("none", "relu", "leaky_relu")
NORMS = ("none", "batch")


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def check_layer(*, norm: str, sources: int = 1, transposed: bool = False,
                activation: str = "leaky_relu", per_image_coefficients: bool = False,
                dropout: bool = False) -> None:
    """Raise CudnnGraphUnsupported (one line, saying why) for a layer the graphs do not cover.
    Needs neither the package nor a GPU."""
    if norm == "instance" or per_image_coefficients:
        raise CudnnGraphUnsupported(
            "instance norm: cuDNN's genstats gives per-channel batch statistics only, and its "
            "prologue scale/shift are per channel; batch norm (or none) only")
    if norm not in NORMS:
        raise CudnnGraphUnsupported(f"norm {norm!r}: one of {NORMS} only")
    if transposed:
        raise CudnnGraphUnsupported("transposed convolution: its cuDNN form is a dgrad, which "
                                    "takes no prologue on its input")
    if sources != 1:
        raise CudnnGraphUnsupported("two sources (skip and up): cuDNN convolves one input")
    if activation not in ACTIVATIONS:
        raise CudnnGraphUnsupported(f"activation {activation!r}: one of {ACTIVATIONS} only")
    if dropout:
        raise CudnnGraphUnsupported("dropout in the prologue: no cuDNN graph node for it")


_FRONTEND = {}


def _frontend():
    """The ``cudnn`` module, imported once, after torch has loaded its own libcudnn (the
    frontend's loader then finds that library before looking elsewhere)."""
    if "module" not in _FRONTEND:
        if torch.cuda.is_available():
            torch.backends.cudnn.version()
        try:
            import cudnn
        except ImportError as error:
            _FRONTEND["module"] = None
            _FRONTEND["why"] = f"{NOT_INSTALLED}: {error}"
        except Exception as error:  # e.g. its loader finding no or two libcudnn
            _FRONTEND["module"] = None
            _FRONTEND["why"] = (f"nvidia-cudnn-frontend failed to import: "
                                f"{type(error).__name__}: {error}")
        else:
            _FRONTEND["module"] = cudnn
    if _FRONTEND["module"] is None:
        raise CudnnGraphNotInstalled(_FRONTEND["why"])
    return _FRONTEND["module"]


def check_available(device: Optional[torch.device] = None) -> None:
    """Raise CudnnGraphNotInstalled without the package, CudnnGraphUnavailable when
    ``device`` (default: the current CUDA device) is not a CUDA GPU."""
    _frontend()
    device = torch.device(device) if device is not None else None
    if (device is not None and device.type != "cuda") or not torch.cuda.is_available():
        raise CudnnGraphUnavailable("cuDNN graphs need a CUDA device")


def availability(device: Optional[torch.device] = None) -> Optional[str]:
    """None when the graphs can run on ``device``, else why not (check_available's reason)."""
    try:
        check_available(device)
    except CudnnGraphUnavailable as error:
        return str(error)
    return None


_BUILT = {}      # (kind, LayerKey) -> Built, or the CudnnGraphUnsupported it raised
_HANDLES = {}    # torch.device -> cudnn.Handle
_LOCK = ForkSafeLock()


def _handle(cudnn, device: torch.device):
    """One cuDNN handle per device, created on first use; _LOCK serialises its calls (the
    backward runs on autograd's thread)."""
    if device not in _HANDLES:
        with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
            _HANDLES[device] = cudnn.create_handle()
    return _HANDLES[device]


def _plan(kind: str, key: LayerKey) -> Built:
    """The graph of ``kind`` for ``key``: the first variant cuDNN builds, planned once (a
    refusal is cached too and raised again)."""
    with _LOCK:
        if (kind, key) not in _BUILT:
            _BUILT[kind, key] = _first_that_builds(kind, key)
        found = _BUILT[kind, key]
    if isinstance(found, CudnnGraphUnsupported):
        raise CudnnGraphUnsupported(str(found))
    return found


def describe(input_shape, weight_shape) -> str:
    """What was built for the layers with these x and weight shapes, per graph kind: the
    variant, or "unsupported" (for the benchmark's record); "" before any was planned."""
    with _LOCK:
        found = [(kind, key, built) for (kind, key), built in _BUILT.items()
                 if key.input == tuple(input_shape) and key.weight == tuple(weight_shape)]
    return "; ".join(
        f"{kind}: " + ("unsupported" if isinstance(built, CudnnGraphUnsupported)
                       else built.variant.describe())
        for kind, _, built in found)


def _first_that_builds(kind: str, key: LayerKey):
    cudnn = _frontend()
    write, variants = KINDS[kind]
    reasons = []
    for variant in variants:
        if not variant.applies_to(key):
            continue
        writer = GraphWriter(cudnn, _handle(cudnn, key.device), key, variant)
        write(writer)
        try:
            return writer.build()
        except CudnnGraphUnsupported as error:
            reasons.append(str(error))
    return CudnnGraphUnsupported(f"{kind} graph: " + "; ".join(reasons))


def _run(built: Built, key: LayerKey, buffers: dict, scale, shift) -> None:
    """Execute ``built`` on the current stream. buffers: role -> tensor in the declared
    layout (the backend reads only the pointers); scale/shift are cast to the variant's
    dtype here."""
    if scale is not None:
        dtype = torch.float32 if built.variant.coefficients == "float32" else key.dtype
        buffers["scale"] = scale.detach().reshape(1, -1, 1, 1).to(dtype).contiguous()
        buffers["shift"] = shift.detach().reshape(1, -1, 1, 1).to(dtype).contiguous()
    cudnn, device = _frontend(), key.device
    with _LOCK:
        handle = _handle(cudnn, device)
        if device.type == "cuda":
            cudnn.set_stream(handle, torch.cuda.current_stream(device).cuda_stream)
        workspace = torch.empty(built.workspace, dtype=torch.uint8, device=device)
        built.graph.execute({tensor: buffers[role] for role, tensor in built.tensors.items()},
                            workspace, handle=handle)


def _empty_nhwc(shape, key: LayerKey) -> torch.Tensor:
    return torch.empty(shape, dtype=key.dtype, device=key.device,
                       memory_format=torch.channels_last)


def _empty_statistic(key: LayerKey, channels: Optional[int] = None) -> torch.Tensor:
    """A float32 per-channel vector (default: one per output channel)."""
    return torch.empty(channels or key.output[1], dtype=torch.float32, device=key.device)


def _coefficient_grads(buffers: dict, x, variant: Variant):
    """(grad scale, grad shift) = (sum dz * x, sum dz) over N, H, W: the dgrad graph's sums,
    or torch's reductions of its dz."""
    if variant.reductions_in_graph:
        return buffers["dzx_sum"], buffers["dz_sum"]
    dz = buffers["dz"].float()
    return (dz * x.float()).sum((0, 2, 3)), dz.sum((0, 2, 3))


class _ConvGraph(torch.autograd.Function):
    """(y, sum, sumsq) of one layer through the forward graph; dgrad and wgrad graphs in the
    backward."""

    @staticmethod
    def forward(ctx, key: LayerKey, x, scale, shift, weight, bias):
        ctx.weight_dtype = weight.dtype
        x = _channels_last(x.detach())
        weight = _channels_last(weight.detach().to(key.dtype))
        built = _plan("forward", key)
        y = _empty_nhwc(key.output, key)
        buffers = {"x": x, "weight": weight, "y": y}
        sums = None
        if key.statistics and built.variant.statistics_in_graph:
            sums = [_empty_statistic(key) for _ in range(2)]
            buffers["sum"], buffers["sumsq"] = sums
        if bias is not None:
            buffers["bias"] = bias.detach().to(key.dtype).contiguous()
        _run(built, key, buffers, scale, shift)
        if bias is not None and not built.variant.bias_in_graph:
            _add_bias(y, bias, sums, key)
        if key.statistics and not built.variant.statistics_in_graph:
            sums = [y.sum((0, 2, 3), dtype=torch.float32),
                    torch.linalg.vector_norm(y, dim=(0, 2, 3), dtype=torch.float32).square()]
        ctx.key = key
        ctx.save_for_backward(x, scale, shift, weight, bias, y)
        return (y, None, None) if sums is None else (y, *sums)

    @staticmethod
    def backward(ctx, grad_y, grad_sum, grad_sumsq):
        refuse_graph_of_backward("conv_graph_norm (cuDNN graphs)",
                                 "run that layer as torch's convolution (F.conv2d) instead")
        key = ctx.key
        x, scale, shift, weight, bias, y = ctx.saved_tensors
        grad = _with_statistics_grad(grad_y, grad_sum, grad_sumsq, y, key)
        needs_x, needs_scale, needs_shift, needs_weight, needs_bias = ctx.needs_input_grad[1:]
        grad_x = grad_scale = grad_shift = grad_weight = grad_bias = None
        coefficient_grads = key.normed and (needs_scale or needs_shift)
        if needs_x or coefficient_grads:
            built = _plan("dgrad+dz" if coefficient_grads else "dgrad", key)
            grad_x = _empty_nhwc(key.input, key)
            buffers = {"dy": grad, "weight": weight, "x": x, "dx": grad_x}
            if coefficient_grads and built.variant.reductions_in_graph:
                buffers["dz_sum"], buffers["dzx_sum"] = (_empty_statistic(key, key.input[1])
                                                         for _ in range(2))
            elif coefficient_grads:
                buffers["dz"] = _empty_nhwc(key.input, key)
            _run(built, key, buffers, scale, shift)
            if coefficient_grads:
                grad_scale, grad_shift = _coefficient_grads(buffers, x, built.variant)
                grad_scale, grad_shift = grad_scale.to(scale.dtype), grad_shift.to(shift.dtype)
        if needs_weight:
            built = _plan("wgrad", key)
            grad_weight = _empty_nhwc(key.weight, key)
            buffers = {"dy": grad, "x": x, "dweight": grad_weight}
            if not built.variant.prologue_in_graph:
                buffers["activated"] = _activated(x, scale, shift, key)
            _run(built, key, buffers, scale, shift)
            grad_weight = grad_weight.to(ctx.weight_dtype)
        if bias is not None and needs_bias:
            grad_bias = grad.float().sum((0, 2, 3)).to(bias.dtype)
        return (None, grad_x if needs_x else None, grad_scale, grad_shift, grad_weight,
                grad_bias)


def _activated(x, scale, shift, key: LayerKey) -> torch.Tensor:
    """act(x * scale + shift) in the graphs' dtype and layout, for a plain wgrad graph."""
    z = x.float()
    if scale is not None:
        z = z * scale.detach().float().reshape(1, -1, 1, 1) + \
            shift.detach().float().reshape(1, -1, 1, 1)
    if key.activation == "leaky_relu":
        z = torch.nn.functional.leaky_relu(z, key.slope)
    elif key.activation == "relu":
        z = torch.relu(z)
    return _channels_last(z.to(key.dtype))


def _with_statistics_grad(grad_y, grad_sum, grad_sumsq, y, key: LayerKey) -> torch.Tensor:
    """dy plus what reaches y through its sums (d sum / dy = 1, d sumsq / dy = 2 y), in the
    graphs' dtype and layout."""
    grad = torch.zeros_like(y) if grad_y is None else grad_y
    if grad_sum is not None or grad_sumsq is not None:
        grad = grad.float()
        if grad_sum is not None:
            grad = grad + grad_sum.float().reshape(1, -1, 1, 1)
        if grad_sumsq is not None:
            grad = grad + 2 * grad_sumsq.float().reshape(1, -1, 1, 1) * y.float()
    return _channels_last(grad.to(key.dtype))


def _add_bias(y, bias, sums, key: LayerKey) -> None:
    """The variants without the bias in the graph: y += bias, and the sums of y + bias from
    those of y (sum + n b, sumsq + 2 b sum + n b^2; n values per channel)."""
    b = bias.detach().float()
    if sums is not None:
        total, squares = sums
        count = key.output[0] * key.output[2] * key.output[3]
        squares += 2 * b * total + count * b * b
        total += count * b
    y += b.reshape(1, -1, 1, 1).to(y.dtype)


def conv_graph_norm(x: torch.Tensor, scale: Optional[torch.Tensor],
                    shift: Optional[torch.Tensor], weight: torch.Tensor,
                    bias: Optional[torch.Tensor] = None, *, stride: int, padding: int,
                    activation: str = "leaky_relu", slope: float = 0.2, norm: str = "batch",
                    eps: float = 1e-5, running_mean: Optional[torch.Tensor] = None,
                    running_var: Optional[torch.Tensor] = None, momentum: float = 0.1):
    """(y, mean, rstd) as ``fastp2p.ops.conv_norm_act`` gives them for one source:
    y = conv(act(x * scale + shift), weight) + bias through cuDNN graphs, and y's batch-norm
    statistics (``norm="batch"``; (y, None, None) for ``"none"``), the running buffers updated
    in place when given. x: (N, C, H, W) on a CUDA device, bf16, fp16 or fp32 (channels-last
    saves a copy); scale, shift: (C,) float32, or both None where no norm precedes; weight:
    nn.Conv2d's (K, C, KH, KW). Differentiable in x, scale, shift, weight and bias. Example,
    a PatchGAN conv after a batch norm with parameters gamma, beta::

        scale = gamma * rstd_prev; shift = beta - mean_prev * scale
        y, mean, rstd = conv_graph_norm(y_prev, scale, shift, conv.weight, conv.bias,
                                        stride=2, padding=1, norm="batch")

    Raises CudnnGraphUnsupported for a layer the graphs do not cover (``check_layer``) or
    that cuDNN has no engine for, CudnnGraphNotInstalled without the package,
    CudnnGraphUnavailable without a CUDA device.
    """
    check_layer(norm=norm, activation=activation,
                per_image_coefficients=scale is not None and scale.dim() != 1)
    if (scale is None) != (shift is None):
        raise ValueError("conv_graph_norm: give scale and shift together, or neither")
    check_available(x.device)
    device = x.device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = LayerKey(device=device, dtype=x.dtype, input=tuple(x.shape),
                   weight=tuple(weight.shape), stride=int(stride), padding=int(padding),
                   activation=activation, slope=float(slope), normed=scale is not None,
                   statistics=norm == "batch", bias=bias is not None)
    y, total, squares = _ConvGraph.apply(key, x, scale, shift, weight, bias)
    if total is None:
        return y, None, None
    count = key.output[0] * key.output[2] * key.output[3]
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0)
    rstd = torch.rsqrt(var + eps)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * count / max(count - 1, 1)).to(running_var.dtype),
                              momentum)
    return y, mean, rstd
