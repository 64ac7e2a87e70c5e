"""Autograd for the fused convolution of ``fastp2p.kernels.conv_fused``: conv of one or two
prologue-transformed sources, returning the pre-norm output and its norm statistics — or, for a
network's output layer (no norm), the output through a tanh in the epilogue.

A layer chain is ``y, (mean, rstd) = conv_norm_act(...)``, then the next layer's prologue
takes ``scale = gamma * rstd`` and ``shift = beta - mean * scale`` (tiny per-channel torch ops,
so autograd carries gamma, beta and the statistics), so the normalised activation is never
written. Backward: dgrad per source (its epilogue gives the gradients of scale and shift),
wgrad per source (recomputing the activated input), the bias gradient as a sum; the gradient
reaching (mean, rstd) is added to the output gradient while dgrad and wgrad load it (a
GradFold: alpha * y + beta per channel), so that sum is never written. With the output tanh
the fold is the tanh's derivative, grad * (1 - y^2), and the bias gradient is one pass of its
own (conv_fused_bias_grad): no tanh backward runs. Saved: the sources (pre-norm), the output
(the tanh'd one with the tanh: the only copy of the layer's output) and the statistics — no
activated tensor.

The launchers come from ``fastp2p.ops.backends.conv_fused_backend`` (Triton: CUDA, or CPU through
the interpreter); ``backends/conv_choice.py`` says which network layers use this op
(fastp2p.nn.fused_conv: the PatchGAN; fastp2p.nn.unet_conv: the U-Net). Takes explicit dtypes
(float32, bf16, fp16) and must run with autocast off; under autocast the networks' helper
``fastp2p.nn.fused_conv.fused_conv_norm`` casts the operands as autocast would and calls it so.
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from fastp2p.kernels.conv_fused_types import (IDENTITY, OUTPUT_ACTIVATIONS, GradFold,
                                              InputTransform)
from fastp2p.ops.backends import conv_fused_backend
from fastp2p.ops.definitions import check_norm_groups, refuse_graph_of_backward

# The op and its argument types: the networks reach kernels/ through this layer only.
__all__ = ["IDENTITY", "NORMS", "InputTransform", "conv_norm_act"]
NORMS = ("none", "instance", "batch")


@dataclass(frozen=True)
class _Config:
    stride: int
    padding: int
    transposed: bool
    slope: float
    norm: str
    eps: float
    momentum: float
    activations: tuple
    dropouts: tuple      # (p, seed, offset) per source
    output_activation: str


def _frozen_rng(value):
    """A device-scalar seed/offset is copied: the backward must see the forward's value even
    if the caller advances it in place (CUDA-graph replay)."""
    return value.clone() if isinstance(value, torch.Tensor) else value


class _ConvNormAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cfg: _Config, running_mean, running_var, weight, bias, *flat):
        sources = flat[0::3]
        transforms = [InputTransform(scale, shift, act, p, seed, offset)
                      for scale, shift, act, (p, seed, offset)
                      in zip(flat[1::3], flat[2::3], cfg.activations, cfg.dropouts)]
        kernels = _launchers(weight.device)
        y, parts = kernels.conv_fused_fwd(sources, transforms, weight, bias, stride=cfg.stride,
                                          padding=cfg.padding, transposed=cfg.transposed,
                                          slope=cfg.slope, partials=cfg.norm != "none",
                                          output_activation=cfg.output_activation)
        mean = rstd = None
        if cfg.norm != "none":
            # before the running statistics are touched; the statistics are always the batch's
            check_norm_groups(tuple(y.shape), cfg.norm, True, "conv_norm_act")
            mean, rstd, _, _ = kernels.conv_stats_finish(
                parts, per_sample=cfg.norm == "instance", eps=cfg.eps,
                running_mean=running_mean, running_var=running_var, momentum=cfg.momentum)
        ctx.cfg = cfg
        ctx.transforms = [t._replace(scale=None, shift=None) for t in transforms]
        ctx.save_for_backward(weight, bias, y, mean, rstd, *flat)
        return y, mean, rstd

    @staticmethod
    def backward(ctx, grad_y, grad_mean, grad_rstd):
        refuse_graph_of_backward("the fused convolution (conv_norm_act)",
                                 "set FASTP2P_CONV=module to run the networks' convolutions "
                                 "as torch modules")
        cfg = ctx.cfg
        weight, bias, y, mean, rstd, *flat = ctx.saved_tensors
        kernels = _launchers(weight.device)
        grad_y = (torch.zeros_like(y) if grad_y is None else grad_y).to(weight.dtype)
        if cfg.output_activation == "tanh":
            fold = GradFold(y, tanh=True)
        else:
            fold = _statistics_fold(grad_mean, grad_rstd, y, mean, rstd, cfg.norm)
        geometry = dict(stride=cfg.stride, padding=cfg.padding, transposed=cfg.transposed,
                        slope=cfg.slope, fold=fold)
        grads_flat, weight_grads, offset = [], [], 0
        for i, template in enumerate(ctx.transforms):
            x, scale, shift = flat[3 * i: 3 * i + 3]
            transform = template._replace(scale=scale, shift=shift)
            needs = ctx.needs_input_grad[5 + 3 * i: 8 + 3 * i]
            grad_x = grad_scale = grad_shift = None
            if any(needs):
                grad_x, grad_scale, grad_shift = kernels.conv_fused_dgrad(
                    grad_y, weight, x, transform, channel_offset=offset, **geometry)
            grads_flat += [grad_x, grad_scale, grad_shift]
            if ctx.needs_input_grad[3]:
                weight_grads.append(kernels.conv_fused_wgrad(
                    grad_y, x, transform, kernel_size=tuple(weight.shape[2:]), **geometry))
            offset += x.shape[1]
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[3]:
            grad_weight = torch.cat(weight_grads, 0 if cfg.transposed else 1).to(weight.dtype)
        if bias is not None and ctx.needs_input_grad[4]:
            if cfg.output_activation == "tanh":
                grad_bias = kernels.conv_fused_bias_grad(grad_y, fold)
            else:
                grad_bias = grad_y.float().sum((0, 2, 3))
                if fold is not None:  # sum of alpha * y + beta, from the statistics: no pass over y
                    folded = _group_count(y, cfg.norm) * (fold.alpha * mean + fold.beta)
                    grad_bias = grad_bias + folded.reshape(-1, y.shape[1]).sum(0)
            grad_bias = grad_bias.to(bias.dtype)
        return (None, None, None, grad_weight, grad_bias, *grads_flat)


def _launchers(device):
    backend = conv_fused_backend(device)
    if backend is None:
        raise ValueError(f"conv_norm_act: no backend has the fused convolution for {device} "
                         "tensors; it needs Triton (a CUDA GPU, or TRITON_INTERPRET=1 set before "
                         "fastp2p's kernels are imported on CPU)")
    return backend


def _group_count(y, norm) -> int:
    """Values per statistic: an image's map (instance norm) or the whole batch's (batch)."""
    return y.shape[2] * y.shape[3] * (1 if norm == "instance" else y.shape[0])


def _statistics_fold(grad_mean, grad_rstd, y, mean, rstd, norm) -> Optional[GradFold]:
    """What reaches y through mean and rstd = (var + eps)^-1/2 (biased var), as the GradFold
    alpha * y + beta that dgrad and wgrad add while loading grad_y: d mean / d y = 1 / count,
    d rstd / d y = -rstd^3 (y - mean) / count. None when the statistics have no gradient."""
    if norm == "none" or (grad_mean is None and grad_rstd is None):
        return None
    count = _group_count(y, norm)
    grad_mean = torch.zeros_like(mean) if grad_mean is None else grad_mean.float()
    grad_rstd = torch.zeros_like(rstd) if grad_rstd is None else grad_rstd.float()
    alpha = -grad_rstd * rstd ** 3 / count
    return GradFold(y, alpha.contiguous(), (grad_mean / count - alpha * mean).contiguous())


def conv_norm_act(sources: Sequence[torch.Tensor], transforms: Sequence[InputTransform],
                  weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *, stride: int,
                  padding: int, transposed: bool = False, slope: float = 0.2,
                  norm: str = "none", eps: float = 1e-5, running_mean=None, running_var=None,
                  momentum: float = 0.1, output_activation: str = "none"):
    """(y, mean, rstd): y = conv(cat(dropout(act(x_i * scale_i + shift_i)))) + bias, and y's
    statistics for the next norm (``norm``: "instance" -> (N, C_out), "batch" -> (C_out,),
    "none" -> None, None; batch norm updates the running buffers in place when given).
    ``output_activation`` "tanh" (a network's output layer, norm "none" only): y is tanh of
    that, applied in the epilogue, its backward folded into the conv's.

    sources: one or two (N, C_i, H, W) tensors (the decoder's skip, then up), NHWC preferred;
    transforms: an InputTransform per source (scale/shift (N, C_i) or (C_i,) float32, may
    require grad). weight: nn.Conv2d's (C_out, sum C_i, KH, KW) or, transposed,
    nn.ConvTranspose2d's (sum C_i, C_out, KH, KW); bias: (C_out,) or None. Example, a U-Net
    down block after an instance norm with parameters gamma, beta of the previous layer::

        scale = gamma * rstd_prev; shift = beta - mean_prev * scale
        y, mean, rstd = conv_norm_act([x_prev], [InputTransform(scale, shift, "leaky_relu")],
                                      conv.weight, conv.bias, stride=2, padding=1,
                                      norm="instance")
    """
    if norm not in NORMS:
        raise ValueError(f"conv_norm_act: norm must be one of {NORMS}, got {norm!r}")
    if len(sources) != len(transforms):
        raise ValueError("conv_norm_act: one InputTransform per source")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"conv_norm_act: output_activation must be one of "
                         f"{OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    if output_activation != "none" and norm != "none":
        raise ValueError(f"conv_norm_act: output_activation={output_activation!r} needs "
                         f"norm='none' (statistics of a tanh'd output feed no norm), got "
                         f"norm={norm!r}")
    out_channels = weight.shape[1] if transposed else weight.shape[0]
    if bias is not None and tuple(bias.shape) != (out_channels,):
        # the kernels read bias[c] for each output channel c: a shorter bias would be read
        # past its end, a longer one cut silently
        raise ValueError(f"conv_norm_act: bias must hold one value per output channel, shape "
                         f"({out_channels},) for the {'transposed ' if transposed else ''}"
                         f"weight {tuple(weight.shape)}, got {tuple(bias.shape)}")
    cfg = _Config(stride, padding, transposed, float(slope), norm, float(eps), float(momentum),
                  tuple(t.activation for t in transforms),
                  tuple((t.dropout_p, _frozen_rng(t.seed), _frozen_rng(t.offset))
                        for t in transforms), output_activation)
    flat = []
    for x, t in zip(sources, transforms):
        flat += [x, t.scale, t.shift]
    running = (running_mean, running_var) if norm == "batch" else (None, None)
    return _ConvNormAct.apply(cfg, *running, weight, bias, *flat)
