"""norm_act and norm_act_concat: the fused norm + activation + dropout op with autograd.

Two layers: the forward and the backward are each a ``torch.library.custom_op``
(``fastp2p::norm_act_fwd`` / ``fastp2p::norm_act_bwd``, with fake implementations), so
torch.compile treats them as opaque ops without tracing the launchers; the autograd formula is
a ``torch.autograd.Function`` around them, because the forward mutates BatchNorm's running
statistics and ``register_autograd`` does not accept ops that mutate inputs. Seed/offset are
ints or device scalars (what CUDA-graph replay reads). An eager call that records no autograd
(inference) runs the launcher without either layer: their host cost exceeds a small layer's
kernel time (benchmarks/NOTES.md, "Host cost per fused call"). It runs from a ``_Plan`` cached
per kind of call (each tensor's shape, strides, dtype and device, the settings, the backend):
the argument checks, the output's geometry and the backend's prepared launch (the C++ backend's
``norm_act_fwd_plan``, which skips the statistics the call discards) are made on the kind's first
call only. The losses, pure functions, are custom ops with ``register_autograd``
(fastp2p/ops/losses.py). A backward asked to build a graph (``create_graph=True``: a gradient
penalty) runs ``norm_act_graph_backward`` instead of the kernels: differentiable torch ops.

``norm_act_concat(skip, x, ...)`` returns ``cat([relu(skip), norm_act(x)], 1)`` without
torch.cat: both halves are written by the backend straight into their channel slices of one
buffer (the U-Net decoder input; ReLU because the enclosing block's ReLU is what consumes the
concatenation).
"""
from dataclasses import dataclass
from typing import Optional

import torch

from fastp2p.ops.backends import backend_forced, backend_named, norm_act_backend_for
from fastp2p.ops.definitions import (ACTIVATIONS, NORMS, OP_DTYPES, check_norm_groups,
                                     count_batch, like_memory_format)
from fastp2p.ops.dropout_rng import dropout_threshold
from fastp2p.ops.norm_act_graph_backward import norm_act_backward_with_graph
from fastp2p.ops.norm_act_reference import statistics_dtype
from fastp2p.ops.norm_act_torch import norm_act_torch, trains_with_torch_ops


@dataclass(frozen=True)
class NormActConfig:
    norm: str = "instance"
    training: bool = True
    momentum: float = 0.1
    eps: float = 1e-5
    activation: str = "none"
    slope: float = 0.2
    dropout_p: float = 0.0

    def launcher_kwargs(self):
        return dict(norm=self.norm, training=self.training, momentum=self.momentum, eps=self.eps,
                    activation=self.activation, slope=self.slope, dropout_p=self.dropout_p)


def _check_vector(name, t, channels, x):
    if t is None:
        return
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (channels,):
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"norm_act: {name} must have shape ({channels},) to match x's "
                         f"{channels} channels, got {shape}")
    if t.device != x.device:
        raise ValueError(f"norm_act: {name} is on {t.device}, expected x's device {x.device}")
    if not t.is_floating_point():
        raise ValueError(f"norm_act: {name} must be floating point, got {t.dtype}")


def check_norm_act_inputs(x, weight, bias, running_mean, running_var, cfg: NormActConfig):
    """ValueError naming what was expected, for every backend alike (traceable by dynamo)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"norm_act expects x of shape (N, C, H, W), got {shape}")
    if x.dtype not in OP_DTYPES:
        raise ValueError(f"norm_act expects x in {[str(d) for d in OP_DTYPES]}, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"norm_act: x must not be empty, got shape {tuple(x.shape)}")
    if cfg.norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {cfg.norm!r}")
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {cfg.activation!r}")
    dropout_threshold(cfg.dropout_p)
    channels = x.shape[1]
    if (weight is None) != (bias is None):
        raise ValueError("norm_act: give both weight and bias (affine) or neither")
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        _check_vector(name, t, channels, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("norm_act: give both running_mean and running_var or neither")
    if running_mean is not None and cfg.norm != "batch":
        raise ValueError(f"norm_act: running statistics are only used by norm='batch', "
                         f"got norm={cfg.norm!r}")
    if cfg.norm == "batch" and cfg.training and running_mean is not None and cfg.momentum is None:
        raise ValueError("norm_act: BatchNorm momentum=None (cumulative average) is not "
                         "supported by the fused path; use a float momentum")
    check_norm_groups(tuple(x.shape), cfg.norm, cfg.training or running_mean is None)


def _check_batch_counter(num_batches_tracked, x):
    """num_batches_tracked: None, or a one-element int64 tensor on x's device (a BatchNorm's)."""
    if num_batches_tracked is None:
        return
    t = num_batches_tracked
    if (not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.numel() != 1
            or t.device != x.device):
        what = (f"{t.dtype} of shape {tuple(t.shape)} on {t.device}"
                if isinstance(t, torch.Tensor) else type(t).__name__)
        raise ValueError(f"norm_act: num_batches_tracked must be one int64 element on x's "
                         f"device {x.device} (a BatchNorm's buffer), got {what}")


def _check_like_x(what, t, x, channels):
    """``t`` shares x's batch, map size, dtype and device (its channel count is its own)."""
    n, _, h, w = x.shape
    if t.dim() != 4 or t.shape[0] != n or tuple(t.shape[2:]) != (h, w):
        raise ValueError(f"{what} must be ({n}, {channels}, {h}, {w}) like x, got "
                         f"{tuple(t.shape)}")
    if t.dtype != x.dtype or t.device != x.device:
        raise ValueError(f"{what} must be {x.dtype} on {x.device}, got {t.dtype} on {t.device}")


def _check_destination(out, x, offset):
    _check_like_x("norm_act: destination", out, x, "C_out")
    c = x.shape[1]
    if offset < 0 or offset + c > out.shape[1]:
        raise ValueError(f"norm_act: channels [{offset}, {offset + c}) do not fit a destination "
                         f"with {out.shape[1]} channels")


def _check_rng_value(name, value):
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.int64 or value.numel() != 1:
            raise ValueError(f"norm_act: {name} as a tensor must be one int64 element, got "
                             f"{value.dtype} of shape {tuple(value.shape)}")
    elif not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"norm_act: {name} must be a Python int or an int64 tensor, got "
                         f"{type(value).__name__}")


def _check_rng(seed, offset) -> bool:
    """Whether seed and offset are device scalars (else ints); ValueError for anything else."""
    _check_rng_value("seed", seed)
    _check_rng_value("offset", offset)
    as_tensors = isinstance(seed, torch.Tensor), isinstance(offset, torch.Tensor)
    if as_tensors[0] != as_tensors[1]:
        raise ValueError("norm_act: seed and offset must both be ints or both be int64 tensors")
    return as_tensors[0]


def _rng_args(seed, offset):
    """(seed, offset, rng): ints, or a fresh int64 [seed, offset] device tensor when they are
    device scalars (a copy: the backward must see the forward's values even if the module
    advances its offset in place; a CUDA graph replays the copy with the current values)."""
    if _check_rng(seed, offset):
        return 0, 0, torch.stack([seed.reshape(()), offset.reshape(())]).to(torch.int64)
    return int(seed), int(offset), None


def _rng_kwargs(seed, offset, rng):
    if rng is None:
        return dict(seed=seed, offset=offset)
    return dict(seed=rng[0], offset=rng[1])


_SKIP_KWARGS = NormActConfig(norm="none", activation="relu").launcher_kwargs()


def _output(x, skip):
    """(out, C_skip): the output [relu(skip), norm_act(x)] in x's memory format."""
    skip_channels = 0 if skip is None else skip.shape[1]
    return like_memory_format(x, skip_channels + x.shape[1]), skip_channels


def _launch_fwd(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, rng, seed,
                offset, norm, training, momentum, eps, activation, slope, dropout_p):
    """(out, mean, rstd) as the backend's launcher returns them (the arguments checked)."""
    backend = norm_act_backend_for(x, norm)
    out, skip_channels = _output(x, skip)
    launcher = backend.norm_act_fwd
    if skip is not None:
        launcher(skip, None, None, None, None, out, 0, seed=0, offset=0, **_SKIP_KWARGS)
    mean, rstd = launcher(
        x, weight, bias, running_mean, running_var, out, skip_channels,
        **_rng_kwargs(seed, offset, rng), norm=norm, training=training, momentum=momentum,
        eps=eps, activation=activation, slope=slope, dropout_p=dropout_p,
        num_batches_tracked=num_batches_tracked)
    return out, mean, rstd


# The custom ops below are what torch.compile and other tracers see (opaque, no Python launcher
# to trace); the forward mutates BatchNorm's running statistics and batch count in place. Eager
# calls (CUDA-graph capture included) run the same functions directly: the dispatcher's generic
# handling of a mutating custom op rebuilds the schema's argument list for every argument on
# every call, which costs more host time than a small layer's kernels take on a GPU
# (benchmarks/NOTES.md, run 1).
def _norm_act_fwd(x: torch.Tensor, weight: Optional[torch.Tensor],
                  bias: Optional[torch.Tensor], running_mean: Optional[torch.Tensor],
                  running_var: Optional[torch.Tensor],
                  num_batches_tracked: Optional[torch.Tensor], skip: Optional[torch.Tensor],
                  rng: Optional[torch.Tensor], seed: int, offset: int, norm: str,
                  training: bool, momentum: float, eps: float, activation: str, slope: float,
                  dropout_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, mean, rstd = _launch_fwd(x, weight, bias, running_mean, running_var,
                                  num_batches_tracked, skip, rng, seed, offset, norm, training,
                                  momentum, eps, activation, slope, dropout_p)
    # Outputs of a custom op may alias neither inputs nor each other: eval batch norm can hand
    # back the running mean itself, and "none" one shared empty tensor.
    if norm == "none":
        empty = x.new_empty(0, dtype=statistics_dtype(x))
        return out, empty, empty.clone()
    if running_mean is not None and mean.data_ptr() == running_mean.data_ptr():
        mean = mean.clone()
    return out, mean, rstd


_norm_act_fwd_op = torch.library.custom_op(
    "fastp2p::norm_act_fwd", _norm_act_fwd,
    mutates_args=("running_mean", "running_var", "num_batches_tracked"))


@_norm_act_fwd_op.register_fake
def _(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, rng, seed, offset,
      norm, training, momentum, eps, activation, slope, dropout_p):
    skip_channels = 0 if skip is None else skip.shape[1]
    n, c = x.shape[:2]
    stats = {"instance": (n, c), "batch": (c,), "none": (0,)}[norm]
    mean = x.new_empty(stats, dtype=statistics_dtype(x))
    return like_memory_format(x, skip_channels + c), mean, torch.empty_like(mean)


def _norm_act_bwd(grad_out: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                  bias: Optional[torch.Tensor], mean: torch.Tensor, rstd: torch.Tensor,
                  skip: Optional[torch.Tensor], rng: Optional[torch.Tensor], seed: int,
                  offset: int, norm: str, training: bool, activation: str, slope: float,
                  dropout_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                             torch.Tensor]:
    """(grad_x, grad_weight, grad_bias, grad_skip); absent ones are empty tensors."""
    backend = norm_act_backend_for(x, norm)  # the forward's choice: same x and norm
    skip_channels = 0 if skip is None else skip.shape[1]
    grad_x, grad_weight, grad_bias = backend.norm_act_bwd(
        grad_out.narrow(1, skip_channels, x.shape[1]), x, weight, bias, mean, rstd, norm=norm,
        activation=activation, slope=slope, dropout_p=dropout_p, training=training,
        **_rng_kwargs(seed, offset, rng))
    grad_skip = None
    if skip is not None:
        empty = x.new_empty(0)
        grad_skip = backend.norm_act_bwd(
            grad_out.narrow(1, 0, skip_channels), skip, None, None, empty, empty, norm="none",
            activation="relu", slope=0.0, dropout_p=0.0, seed=0, offset=0)[0]
    # Outputs may not alias inputs or each other (the reference math can return grad_out).
    grad_out_storage = grad_out.untyped_storage().data_ptr()

    def fresh(t):
        if t is None:
            return x.new_empty(0)
        return t.clone() if t.untyped_storage().data_ptr() == grad_out_storage else t

    return tuple(fresh(t) for t in (grad_x, grad_weight, grad_bias, grad_skip))


_norm_act_bwd_op = torch.library.custom_op("fastp2p::norm_act_bwd", _norm_act_bwd,
                                           mutates_args=())


@_norm_act_bwd_op.register_fake
def _(grad_out, x, weight, bias, mean, rstd, skip, rng, seed, offset, norm, training,
      activation, slope, dropout_p):
    empty = x.new_empty(0)
    grad_weight = empty if weight is None else torch.empty_like(weight)
    grad_bias = empty if bias is None else torch.empty_like(bias)
    return (torch.empty_like(x), grad_weight, grad_bias,
            empty if skip is None else torch.empty_like(skip))


def _runs_directly(x) -> bool:
    """Eager call on real tensors: skip the custom op's dispatch (see above). Tracing
    (torch.compile, export, fake or meta tensors) goes through the op."""
    return (type(x) is torch.Tensor and (x.is_cpu or x.device.type != "meta")
            and not torch.compiler.is_compiling())


def _backward_reads_output(cfg: NormActConfig, weight, skip) -> bool:
    """Whether the backward can take the output in place of x: with no norm and no affine, the
    gradient needs only where x > 0, and ReLU / LeakyReLU (slope >= 0) and the dropout scale keep
    that sign (a dropped element's gradient is 0 either way). The next convolution keeps the
    output for its own backward, so saving it instead of x spares one activation-sized buffer
    (the layers without a norm: the U-Net's first and innermost, the PatchGAN's first)."""
    return (cfg.norm == "none" and weight is None and skip is None
            and (cfg.activation != "leaky_relu" or cfg.slope >= 0))


def _mark_running_stats_updated(running_mean, running_var, num_batches_tracked,
                                cfg: NormActConfig) -> None:
    """What the op's dispatch does for its mutated arguments, on a call that skips it."""
    if running_mean is not None and cfg.training:
        counted = () if num_batches_tracked is None else (num_batches_tracked,)
        torch.autograd.graph.increment_version((running_mean, running_var) + counted)


class _NormActFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, num_batches_tracked, skip, seed,
                offset, cfg):
        seed, offset, rng = _rng_args(seed, offset)
        direct = _runs_directly(x)
        forward = _norm_act_fwd if direct else _norm_act_fwd_op
        out, mean, rstd = forward(x, weight, bias, running_mean, running_var,
                                  num_batches_tracked, skip, rng, seed, offset,
                                  **cfg.launcher_kwargs())
        if direct:
            _mark_running_stats_updated(running_mean, running_var, num_batches_tracked, cfg)
        saved_x = out if _backward_reads_output(cfg, weight, skip) else x
        ctx.save_for_backward(saved_x, weight, bias, mean, rstd, skip, rng)
        ctx.cfg, ctx.seed, ctx.offset, ctx.direct = cfg, seed, offset, direct
        ctx.batch_stats = running_mean is None or cfg.training
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, mean, rstd, skip, rng = ctx.saved_tensors  # x: maybe the output
        cfg = ctx.cfg
        if torch.is_grad_enabled():
            # create_graph=True (a gradient penalty): the kernels' gradients would be constants.
            grad_x, grad_weight, grad_bias, grad_skip = norm_act_backward_with_graph(
                grad_out, x, weight, bias, mean, rstd, skip, cfg=cfg,
                batch_stats=ctx.batch_stats,
                reads_output=_backward_reads_output(cfg, weight, skip),
                **_rng_kwargs(ctx.seed, ctx.offset, rng))
        else:
            backward = _norm_act_bwd if ctx.direct else _norm_act_bwd_op
            grad_x, grad_weight, grad_bias, grad_skip = backward(
                grad_out, x, weight, bias, mean, rstd, skip, rng, ctx.seed, ctx.offset,
                norm=cfg.norm, training=ctx.batch_stats, activation=cfg.activation,
                slope=cfg.slope, dropout_p=cfg.dropout_p)
        if weight is None:
            grad_weight = grad_bias = None
        if skip is None:
            grad_skip = None
        return grad_x, grad_weight, grad_bias, None, None, None, grad_skip, None, None, None


def _check_arguments(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, cfg):
    """The op boundary's checks, for the autograd path and a plan's first call alike."""
    check_norm_act_inputs(x, weight, bias, running_mean, running_var, cfg)
    _check_batch_counter(num_batches_tracked, x)
    if skip is not None:
        _check_like_x("norm_act_concat: skip", skip, x, "C_skip")


def _records_autograd(x, weight, bias, skip) -> bool:
    """Whether this call needs the autograd Function (a gradient can flow to an input)."""
    return torch.is_grad_enabled() and any(
        getattr(t, "requires_grad", False) for t in (x, weight, bias, skip))


class _Plan:
    """What an inference call with one (shapes, strides, dtypes, devices, settings, backend)
    needs, prepared by its first call after the full checks: the output's geometry and the
    launches (the backend's ``norm_act_fwd_plan`` where it has one, else ``norm_act_fwd``, read
    at each call). Later calls with the same key run without checking again."""

    __slots__ = ("shape", "strides", "dtype", "device", "launch", "launch_skip", "cfg")

    def __init__(self, backend, x, weight, bias, running_mean, running_var, num_batches_tracked,
                 skip, settings):
        cfg = NormActConfig(*settings)
        _check_arguments(x, weight, bias, running_mean, running_var, num_batches_tracked, skip,
                         cfg)
        out, skip_channels = _output(x, skip)
        self.shape, self.strides, self.dtype, self.device = (
            tuple(out.shape), out.stride(), out.dtype, out.device)
        self.launch = _prepared(backend, x, weight, bias, running_mean, running_var, out,
                                skip_channels, cfg.launcher_kwargs())
        self.launch_skip = None if skip is None else _prepared(
            backend, skip, None, None, None, None, out, 0, _SKIP_KWARGS, skip_half=True)
        self.cfg = cfg

    def run(self, x, weight, bias, running_mean, running_var, num_batches_tracked, skip, seed,
            offset):
        out = torch.empty_strided(self.shape, self.strides, dtype=self.dtype, device=self.device)
        if skip is not None:
            self.launch_skip(skip, None, None, None, None, out, 0, 0)
        if type(seed) is not int or type(offset) is not int:
            seed, offset, rng = _rng_args(seed, offset)
            if rng is not None:
                seed, offset = rng[0], rng[1]
        self.launch(x, weight, bias, running_mean, running_var, out, seed, offset)
        count_batch(num_batches_tracked, self.cfg.norm, self.cfg.training, running_mean)
        _mark_running_stats_updated(running_mean, running_var, num_batches_tracked, self.cfg)
        return out


def _prepared(backend, x, weight, bias, running_mean, running_var, out, out_channel_offset,
              kwargs, skip_half=False):
    """launch(x, weight, bias, running_mean, running_var, out, seed, offset): the backend's
    plan for these tensors, without the statistics the inference call discards; or its
    ``norm_act_fwd`` with these settings (looked up at each call, as the registry does).

    ``skip_half`` (relu(skip) into channels [0, C_skip)): where the C++ backend has no plan for
    the skip's layout beside the output's — an NCHW skip before a channels-last decoder output,
    as in the U-Net's CPU inference on NCHW images, whose transposed convolutions write
    channels-last — torch's ReLU writes the slice instead: the same values, without the
    launcher's staging copy."""
    if backend.provides("norm_act_fwd_plan"):
        plan = backend.norm_act_fwd_plan(x, weight, bias, running_mean, running_var, out,
                                         out_channel_offset, statistics=False, **kwargs)
        if plan is not None:
            return plan
        if skip_half and x.is_cpu:
            return _relu_into_slice

    def launch(x, weight, bias, running_mean, running_var, out, seed, offset):
        backend.norm_act_fwd(x, weight, bias, running_mean, running_var, out, out_channel_offset,
                             seed=seed, offset=offset, **kwargs)
    return launch


def _relu_into_slice(skip, weight, bias, running_mean, running_var, out, seed, offset):
    torch.clamp_min(skip, 0, out=out.narrow(1, 0, skip.shape[1]))


# Plans by key (_plan_for); cleared when full, so that a caller cycling through many shapes
# costs a re-check per call at worst, never unbounded memory.
_plans: dict = {}
_MAX_PLANS = 256


def _signature(t):
    return None if t is None else (t.shape, t.stride(), t.dtype, t.device)


def _plan_for(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, settings):
    """The plan for this inference call (built, with the full checks, on its key's first call).
    The key holds everything the checks and the launch read from the arguments but their data:
    each tensor's shape, strides, dtype and device (None for an absent one), the settings, and
    the backend the registry picks now (it follows FASTP2P_BACKEND between calls)."""
    try:
        backend = norm_act_backend_for(x, settings[0])
    except ValueError:
        # A dtype no backend takes (or FASTP2P_BACKEND's does not): the argument checks say
        # first what is wrong with the arguments, as on the autograd path.
        _check_arguments(x, weight, bias, running_mean, running_var, num_batches_tracked, skip,
                         NormActConfig(*settings))
        raise
    try:
        key = (_signature(x), _signature(weight), _signature(bias), _signature(running_mean),
               _signature(running_var), _signature(num_batches_tracked), _signature(skip),
               settings, backend)
        plan = _plans.get(key)
    except (AttributeError, TypeError):  # not tensors, or unhashable settings: let the
        key, plan = None, None           # checks say what is wrong
    if plan is None:
        plan = _Plan(backend, x, weight, bias, running_mean, running_var, num_batches_tracked,
                     skip, settings)
        if key is not None:
            if len(_plans) >= _MAX_PLANS:
                _plans.clear()
            _plans[key] = plan
    return plan


def _run(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, seed, offset,
         settings):
    """settings: NormActConfig's fields, in order."""
    if _runs_directly(x) and not _records_autograd(x, weight, bias, skip):
        # Inference: nothing to save or differentiate, so the launcher runs without the
        # autograd Function (which costs more host time than a small layer's kernel), from a
        # plan that checked these arguments' kind once (benchmarks/NOTES.md, "Host cost per
        # fused call").
        plan = _plan_for(x, weight, bias, running_mean, running_var, num_batches_tracked, skip,
                         settings)
        return plan.run(x, weight, bias, running_mean, running_var, num_batches_tracked, skip,
                        seed, offset)
    cfg = NormActConfig(*settings)
    _check_arguments(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, cfg)
    if _runs_directly(x) and _trains_with_torch_ops(x, (weight, bias, running_mean,
                                                        running_var), cfg.norm):
        seed, offset, rng = _rng_args(seed, offset)
        if rng is not None:
            seed, offset = int(rng[0]), int(rng[1])
        return norm_act_torch(x, weight, bias, running_mean, running_var, num_batches_tracked,
                              skip, seed, offset, cfg)
    return _NormActFunction.apply(x, weight, bias, running_mean, running_var,
                                  num_batches_tracked, skip, seed, offset, cfg)


def _trains_with_torch_ops(x, vectors, norm: str) -> bool:
    """A call recording autograd that runs PyTorch's own ops (fastp2p.ops.norm_act_torch):
    CPU float32 where the registry picks the C++ backend by itself."""
    return (trains_with_torch_ops(x, vectors, backend_forced())
            and norm_act_backend_for(x, norm) is backend_named("cpp"))


# Where nothing remains of a layer's norm (folded, or none) and no gradient is wanted, the layer
# is one elementwise op, and on CPUs torch's own costs less host time than a fused launch: an
# in-place activation of the fresh convolution output, and the decoder's relu(cat) as two writes
# with the relu (benchmarks/NOTES.md, "Host cost per fused call": torch.cat then an in-place relu
# was faster or equal at every U-Net shape measured, both layouts, 1 and 2 threads; the two
# writes read the concatenation once less; the same bits as the C++ kernels, tested).
# GPUs keep the fused ops: not measured there, and Triton's bfloat16 LeakyReLU rounds differently.
def activations_in_torch(x) -> bool:
    """Whether a network's inference forward on input ``x`` runs its layers that are only an
    activation with torch's own in-place ops instead of ``norm_act``: on CPUs, unless
    ``FASTP2P_BACKEND`` forces a backend (which then runs them, as it runs every other call).
    Asked once per network forward (it reads the environment), not per layer."""
    return x.is_cpu and not backend_forced()


def _momentum_used(momentum, norm, training, running_mean):
    """``momentum``, or 0.0 for a None (BatchNorm's cumulative average) that nothing reads: only
    a batch norm in training with running statistics updates them (with None there the checks
    refuse), and the launchers take a float."""
    if momentum is None and not (norm == "batch" and training and running_mean is not None):
        return 0.0
    return momentum


def norm_act(x, weight=None, bias=None, running_mean=None, running_var=None, *,
             norm="instance", training=True, momentum=0.1, eps=1e-5, activation="none",
             slope=0.2, dropout_p=0.0, seed=0, offset=0, num_batches_tracked=None):
    """dropout(act(norm(x) * weight + bias)) with autograd, in x's memory format.

    - ``x``: (N, C, H, W) float32, bfloat16 or float16 (on the device's fast backend), or
      float64 (the registry runs it on the reference backend), on any device a backend
      serves; channels-last (NHWC) or contiguous, any strides. The output has x's shape, dtype
      and memory format.
    - ``weight`` / ``bias``: (C,) floating point, both or neither (affine).
    - ``running_mean`` / ``running_var``: (C,), both or neither, ``norm="batch"`` only: used in
      eval (``training=False``), updated in place in training (``momentum``, unbiased variance,
      like nn.BatchNorm2d).
    - ``num_batches_tracked``: None, or a BatchNorm's one-element int64 counter, which a batch
      norm in training with running statistics increments as nn.BatchNorm2d does (on the
      Triton backend inside the kernel that updates the running statistics: no launch of its
      own).
    - ``norm``: "instance" | "batch" | "none"; ``activation``: "none" | "relu" | "leaky_relu"
      (``slope``); ``dropout_p`` in [0, 1).
    - ``seed``/``offset``: ints, or int64 0-dim device tensors (read at run time: what a CUDA
      graph replays); the mask is ``fastp2p.ops.dropout_rng.dropout_keep_mask``'s.

    Example::

        x = torch.randn(2, 64, 32, 32).to(memory_format=torch.channels_last)
        y = norm_act(x, weight, bias, norm="instance", activation="leaky_relu", slope=0.2)
    """
    momentum = _momentum_used(momentum, norm, training, running_mean)
    return _run(x, weight, bias, running_mean, running_var, num_batches_tracked, None, seed,
                offset, (norm, training, momentum, eps, activation, slope, dropout_p))


def norm_act_concat(skip, x, weight=None, bias=None, running_mean=None, running_var=None, *,
                    norm="instance", training=True, momentum=0.1, eps=1e-5, activation="relu",
                    slope=0.2, dropout_p=0.0, seed=0, offset=0, num_batches_tracked=None):
    """``cat([relu(skip), norm_act(x, ...)], 1)``, each half written in place by the backend.

    ``skip``: (N, C_skip, H, W) with x's dtype and device; the result is (N, C_skip + C, H, W)
    in x's memory format (the U-Net decoder's input, without a torch.cat). Other arguments as
    ``norm_act`` (activation defaults to "relu" here).

    Example::

        up = norm_act_concat(skip, x, weight, bias, norm="batch", dropout_p=0.5, seed=7)
    """
    momentum = _momentum_used(momentum, norm, training, running_mean)
    return _run(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, seed,
                offset, (norm, training, momentum, eps, activation, slope, dropout_p))


def norm_act_into(x, weight, bias, running_mean, running_var, out, out_channel_offset, *,
                  norm="instance", training=True, momentum=0.1, eps=1e-5, activation="none",
                  slope=0.2, dropout_p=0.0, seed=0, offset=0, num_batches_tracked=None):
    """The checked launcher without autograd: writes ``norm_act(x, ...)`` into
    ``out[:, out_channel_offset:out_channel_offset + C]`` and returns the float32 (mean, rstd)
    (float64 for float64 x) (N, C) for instance norm, (C,) for batch norm, empty for none — for
    callers that manage their own buffers and backward.

    ``out``: (N, C_out, H, W) with x's dtype and device, any memory format; the channels outside
    the slice are left as they are. Other arguments as ``norm_act``.

    Example::

        buffer = torch.empty(2, 96, 32, 32)
        mean, rstd = norm_act_into(x, None, None, None, None, buffer, 32, norm="instance")
    """
    momentum = _momentum_used(momentum, norm, training, running_mean)
    cfg = NormActConfig(norm, training, momentum, eps, activation, slope, dropout_p)
    check_norm_act_inputs(x, weight, bias, running_mean, running_var, cfg)
    _check_batch_counter(num_batches_tracked, x)
    _check_destination(out, x, out_channel_offset)
    _check_rng(seed, offset)
    return norm_act_backend_for(x, norm).norm_act_fwd(
        x, weight, bias, running_mean, running_var, out, out_channel_offset, seed=seed,
        offset=offset, num_batches_tracked=num_batches_tracked, **cfg.launcher_kwargs())
