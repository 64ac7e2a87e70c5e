"""norm_act and norm_act_concat: the fused norm + activation + dropout op with autograd.

Autograd layer: a ``torch.autograd.Function``, not a ``torch.library.custom_op``. The op mutates
BatchNorm's running statistics, takes seed/offset either as ints or as device scalars (graph
replay), and returns a buffer that two backend writes fill; custom_op's register_autograd does
not take mutated inputs, and autograd.Function is what dynamo traces and CUDA graphs capture
as is (no host sync inside). The losses, which are pure functions, are custom ops
(fastp2p/ops/losses.py).

``norm_act_concat(skip, x, ...)`` returns ``cat([relu(skip), norm_act(x)], 1)`` without
torch.cat: both halves are written by the backend straight into their channel slices of one
buffer (the U-Net decoder input; ReLU because the enclosing block's ReLU is what consumes the
concatenation).
"""
from dataclasses import dataclass

import torch

from fastp2p.ops.backends import backend_for, backend_name_for
from fastp2p.ops.dropout_rng import dropout_threshold

NORMS = ("instance", "batch", "none")
ACTIVATIONS = ("none", "relu", "leaky_relu")
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


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


def check_norm_act_inputs(x, weight, bias, running_mean, running_var, cfg: NormActConfig,
                          backend_name: str):
    """ValueError naming what was expected, for every backend alike."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"norm_act expects x of shape (N, C, H, W), got {shape}")
    allowed = _KERNEL_DTYPES if backend_name != "reference" else _KERNEL_DTYPES + (torch.float64,)
    if x.dtype not in allowed:
        raise ValueError(f"norm_act on the {backend_name} backend expects x in "
                         f"{[str(d) for d in allowed]}, got {x.dtype}")
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
    # The same conditions (and messages' meaning) as PyTorch's functional norms.
    n, _, h, w = x.shape
    if cfg.norm == "instance" and h * w <= 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size "
                         f"{list(x.shape)} (instance norm over a 1x1 map)")
    if cfg.norm == "batch" and (cfg.training or running_mean is None) and n * h * w <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {list(x.shape)}")


def _check_destination(out, x, offset):
    n, c, h, w = x.shape
    if out.dim() != 4 or out.shape[0] != n or tuple(out.shape[2:]) != (h, w):
        raise ValueError(f"norm_act: destination must be ({n}, C_out, {h}, {w}), got "
                         f"{tuple(out.shape)}")
    if out.dtype != x.dtype or out.device != x.device:
        raise ValueError(f"norm_act: destination must be {x.dtype} on {x.device}, got "
                         f"{out.dtype} on {out.device}")
    if not 0 <= offset or offset + c > out.shape[1]:
        raise ValueError(f"norm_act: channels [{offset}, {offset + c}) do not fit a destination "
                         f"with {out.shape[1]} channels")


def _like_memory_format(x, channels):
    """An uninitialised (N, channels, H, W) tensor in x's memory format (channels-last stays)."""
    n, _, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty((n, channels, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)


def _snapshot(value):
    """The RNG position the backward must reuse, even if the module advances it in place."""
    return value.clone() if isinstance(value, torch.Tensor) else int(value)


_SKIP_CFG = NormActConfig(norm="none", activation="relu")


class _NormActFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, skip, seed, offset, cfg):
        backend = backend_for(x.device)
        skip_channels = 0 if skip is None else skip.shape[1]
        out = _like_memory_format(x, skip_channels + x.shape[1])
        rng = dict(seed=_snapshot(seed), offset=_snapshot(offset))
        if skip is not None:
            backend.norm_act_fwd(skip, None, None, None, None, out, 0, seed=0, offset=0,
                                 **_SKIP_CFG.launcher_kwargs())
        mean, rstd = backend.norm_act_fwd(x, weight, bias, running_mean, running_var, out,
                                          skip_channels, **rng, **cfg.launcher_kwargs())
        ctx.save_for_backward(x, weight, bias, mean, rstd, skip)
        ctx.cfg, ctx.rng, ctx.skip_channels, ctx.backend = cfg, rng, skip_channels, backend
        ctx.batch_stats = running_mean is None or cfg.training
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, mean, rstd, skip = ctx.saved_tensors
        cfg, backend = ctx.cfg, ctx.backend
        grad_x, grad_weight, grad_bias = backend.norm_act_bwd(
            grad_out.narrow(1, ctx.skip_channels, x.shape[1]), x, weight, bias, mean, rstd,
            norm=cfg.norm, activation=cfg.activation, slope=cfg.slope, dropout_p=cfg.dropout_p,
            training=ctx.batch_stats, **ctx.rng)
        grad_skip = None
        if skip is not None and ctx.needs_input_grad[5]:
            empty = mean.new_empty(0)
            grad_skip = backend.norm_act_bwd(
                grad_out.narrow(1, 0, ctx.skip_channels), skip, None, None, empty, empty,
                norm="none", activation="relu", slope=0.0, dropout_p=0.0, seed=0, offset=0)[0]
        return grad_x, grad_weight, grad_bias, None, None, grad_skip, None, None, None


def _run(x, weight, bias, running_mean, running_var, skip, seed, offset, cfg):
    name = backend_name_for(x.device)
    check_norm_act_inputs(x, weight, bias, running_mean, running_var, cfg, name)
    if skip is not None:
        if skip.dim() != 4 or skip.shape[0] != x.shape[0] or skip.shape[2:] != x.shape[2:]:
            raise ValueError(f"norm_act_concat: skip must be ({x.shape[0]}, C_skip, "
                             f"{x.shape[2]}, {x.shape[3]}) like x, got {tuple(skip.shape)}")
        if skip.dtype != x.dtype or skip.device != x.device:
            raise ValueError(f"norm_act_concat: skip must be {x.dtype} on {x.device}, got "
                             f"{skip.dtype} on {skip.device}")
    return _NormActFunction.apply(x, weight, bias, running_mean, running_var, skip, seed,
                                  offset, cfg)


def norm_act(x, weight=None, bias=None, running_mean=None, running_var=None, *,
             norm="instance", training=True, momentum=0.1, eps=1e-5, activation="none",
             slope=0.2, dropout_p=0.0, seed=0, offset=0):
    """dropout(act(norm(x) * weight + bias)) with autograd, in x's memory format.

    ``seed``/``offset``: ints, or int64 0-dim device tensors (read at run time: what a CUDA
    graph replays); the mask is ``fastp2p.ops.dropout_rng.dropout_keep_mask``'s.
    """
    cfg = NormActConfig(norm, training, momentum, eps, activation, slope, dropout_p)
    return _run(x, weight, bias, running_mean, running_var, None, seed, offset, cfg)


def norm_act_concat(skip, x, weight=None, bias=None, running_mean=None, running_var=None, *,
                    norm="instance", training=True, momentum=0.1, eps=1e-5, activation="relu",
                    slope=0.2, dropout_p=0.0, seed=0, offset=0):
    """``cat([relu(skip), norm_act(x, ...)], 1)``, each half written in place by the backend."""
    cfg = NormActConfig(norm, training, momentum, eps, activation, slope, dropout_p)
    return _run(x, weight, bias, running_mean, running_var, skip, seed, offset, cfg)


def norm_act_into(x, weight, bias, running_mean, running_var, out, out_channel_offset, *,
                  norm="instance", training=True, momentum=0.1, eps=1e-5, activation="none",
                  slope=0.2, dropout_p=0.0, seed=0, offset=0):
    """No-autograd forward into a caller's buffer slice (what benchmarks time); checked."""
    cfg = NormActConfig(norm, training, momentum, eps, activation, slope, dropout_p)
    name = backend_name_for(x.device)
    check_norm_act_inputs(x, weight, bias, running_mean, running_var, cfg, name)
    _check_destination(out, x, out_channel_offset)
    return backend_for(x.device).norm_act_fwd(x, weight, bias, running_mean, running_var, out,
                                              out_channel_offset, seed=seed, offset=offset,
                                              **cfg.launcher_kwargs())
