"""The discriminator stack with the fused convolution (fastp2p.ops.conv_norm_act) on the layers
the conv choice gives it (fastp2p.ops.backends.conv_choice: none by default, every one with
FASTP2P_CONV=fused).

A fused layer reads its input before the previous norm: its prologue applies that norm's
scale/shift and the LeakyReLU, its epilogue gives its own norm's statistics (batch norm's running
buffers updated like nn.BatchNorm2d's), and the next scale/shift are tiny per-channel torch ops
on them (autograd carries gamma, beta and the statistics). Between two fused layers the
normalised activation is never written. A layer left to its module runs as in
``fastp2p.nn.fused.sequential_forward`` (module conv + norm_act), after plain torch ops apply
whatever norm + activation the fused layer before it left pending.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastp2p.kernels.conv_fused_types import IDENTITY, InputTransform
from fastp2p.nn.folding import gradient_wanted
from fastp2p.nn.fused import conv_norm, sequential_forward
from fastp2p.ops import norm_act
from fastp2p.ops.aligned_channels import conv2d
from fastp2p.ops.backends.conv_choice import uses_fused_conv
from fastp2p.ops.conv_norm_act import conv_norm_act


class _Layer(NamedTuple):
    conv: nn.Conv2d
    norm: Optional[nn.Module]       # BatchNorm2d / InstanceNorm2d, or None
    slope: Optional[float]          # the LeakyReLU after it, or None


def _layers(seq: nn.Sequential):
    """The stack as [conv, norm?, LeakyReLU?] layers, or None for any other arrangement."""
    layers = []
    for m in seq:
        if isinstance(m, nn.Conv2d):
            layers.append(_Layer(m, None, None))
        elif not layers or layers[-1].slope is not None:
            return None
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and layers[-1].norm is None:
            layers[-1] = layers[-1]._replace(norm=m)
        elif isinstance(m, nn.LeakyReLU):
            layers[-1] = layers[-1]._replace(slope=m.negative_slope)
        elif not isinstance(m, nn.Identity):
            return None
    return layers


def _norm_name(norm) -> str:
    if norm is None:
        return "none"
    return "batch" if isinstance(norm, nn.BatchNorm2d) else "instance"


def _fusable(conv: nn.Conv2d) -> bool:
    """The geometry the fused kernel computes: square stride and padding, zeros padding."""
    return (conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
            and conv.stride[0] == conv.stride[1])


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """(N, C) or (C,) -> broadcastable over (N, C, H, W)."""
    return t[:, :, None, None] if t.dim() == 2 else t[None, :, None, None]


def _apply(x, transform: InputTransform, slope: float):
    """What a fused layer's prologue would apply, as torch ops (before a module layer)."""
    if transform.scale is not None:
        x = (x * _per_channel(transform.scale) + _per_channel(transform.shift)).to(x.dtype)
    if transform.activation == "leaky_relu":
        x = F.leaky_relu(x, slope)
    return x


def _next_transform(norm, mean, rstd, slope) -> InputTransform:
    """The next prologue from this layer's statistics: scale = gamma * rstd, shift = beta -
    mean * scale (gamma 1, beta 0 without affine), then the LeakyReLU if there is one."""
    activation = "leaky_relu" if slope is not None else "none"
    if mean is None:
        return InputTransform(activation=activation)
    scale = rstd if norm.weight is None else norm.weight * rstd
    shift = -mean * scale if norm.bias is None else norm.bias - mean * scale
    return InputTransform(scale, shift, activation)


def _fused_layer(layer: _Layer, x, transform: InputTransform, slope: float):
    """conv_norm_act of one layer: its pre-norm output and the next layer's prologue."""
    conv, norm = layer.conv, layer.norm
    name = _norm_name(norm)
    geometry = dict(stride=conv.stride[0], padding=conv.padding[0], slope=slope)
    batch = name == "batch"
    if batch and not norm.training and norm.track_running_stats:
        # eval batch norm: the running statistics are constants of the next prologue
        y, _, _ = conv_norm_act([x], [transform], conv.weight, conv.bias, norm="none",
                                **geometry)
        rstd = torch.rsqrt(norm.running_var.float() + norm.eps)
        return y, _next_transform(norm, norm.running_mean.float(), rstd, layer.slope)
    tracking = batch and norm.training and norm.track_running_stats
    running = dict(running_mean=norm.running_mean, running_var=norm.running_var,
                   momentum=norm.momentum) if tracking else {}
    if tracking:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
    y, mean, rstd = conv_norm_act([x], [transform], conv.weight, conv.bias, norm=name,
                                  eps=norm.eps if norm is not None else 1e-5, **running,
                                  **geometry)
    return y, _next_transform(norm, mean, rstd, layer.slope)


def _module_layer(layer: _Layer, x, fold: bool):
    """The layer as fastp2p.nn.fused.sequential_forward runs it: module conv + norm_act."""
    if layer.norm is None and layer.slope is None:  # the logit conv
        return conv2d(layer.conv, x)
    act = dict(activation="none")
    if layer.slope is not None:
        act = dict(activation="leaky_relu", slope=layer.slope)
    if layer.norm is None:
        x, norm = conv2d(layer.conv, x), dict(norm="none")
    else:
        x, norm = conv_norm(conv2d, layer.conv, layer.norm, x, fold)
    return norm_act(x, **norm, **act)


def conv_stack_forward(seq: nn.Sequential, x):
    """The discriminator stack ``seq`` (already checked by ``sequential_supported``), each
    layer through the fused convolution or its module as the conv choice says."""
    layers = _layers(seq)
    if layers is None:
        return sequential_forward(seq, x)
    fold = not gradient_wanted(seq, x)
    transform, slope = IDENTITY, 0.2
    for layer in layers:
        conv = layer.conv
        if _fusable(conv) and uses_fused_conv(x, conv.weight, stride=conv.stride[0],
                                              padding=conv.padding[0],
                                              norm=_norm_name(layer.norm)):
            x, transform = _fused_layer(layer, x, transform, slope)
        else:
            x, transform = _module_layer(layer, _apply(x, transform, slope), fold), IDENTITY
        slope = layer.slope if layer.slope is not None else 0.2
    return _apply(x, transform, slope)
