"""The discriminator stack with the fused convolution (fastp2p.ops.conv_norm_act) on the layers
the conv choice gives it (fastp2p.ops.backends.conv_choice: none by default, every one with
FASTP2P_CONV=fused).

A fused layer reads its input before the previous norm: its prologue applies that norm's
scale/shift and the LeakyReLU, its epilogue gives its own norm's statistics (batch norm's running
buffers updated like nn.BatchNorm2d's), and the next scale/shift are tiny per-channel torch ops
on them (autograd carries gamma, beta and the statistics). Between two fused layers the
normalised activation is never written. A layer left to its module runs as in
``fastp2p.nn.fused.sequential_forward`` (module conv + norm_act), after plain torch ops apply
whatever norm + activation the fused layer before it left pending. fastp2p.PatchDiscriminator
calls ``conv_stack_forward`` only for a forward the choice may give a layer of
(``conv_choice.may_fuse``); any other runs ``sequential_forward`` itself, and so does
``conv_stack_forward`` where the choice, asked for each layer before any runs
(``layer_plan``), gives it none. ``fused_conv_norm``, ``fused_layer_dtype``, ``layer_plan``,
``conv_output_size`` and ``apply_transform`` are shared with the U-Net's routing
(fastp2p.nn.unet_conv).
"""
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastp2p.nn.batch_statistics import updates_running_stats, uses_running_stats
from fastp2p.nn.checks import with_article
from fastp2p.nn.folding import gradient_wanted
from fastp2p.nn.fused import conv_norm, sequential_forward
from fastp2p.ops import norm_act
from fastp2p.ops.aligned_channels import conv2d
from fastp2p.ops.backends.conv_choice import fused_conv_dtype
from fastp2p.ops.conv_norm_act import IDENTITY, InputTransform, conv_norm_act


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
    """conv_norm_act's ``norm`` for a norm module (None or nn.Identity: "none")."""
    if norm is None or isinstance(norm, nn.Identity):
        return "none"
    return "batch" if isinstance(norm, nn.BatchNorm2d) else "instance"


def _fusable(conv: nn.Module) -> bool:
    """The geometry the fused kernel computes: square stride and padding, zeros padding; a
    transposed convolution also without output padding and with a kernel that is a multiple of
    the stride."""
    if isinstance(conv, nn.ConvTranspose2d) and (
            conv.output_padding != (0, 0)
            or any(k % conv.stride[0] for k in conv.kernel_size)):
        return False
    return (conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
            and conv.stride[0] == conv.stride[1])


def fused_layer_dtype(conv: nn.Module, norm: Optional[nn.Module], x: torch.Tensor,
                      gradient: bool, size: Optional[Sequence[int]] = None):
    """The dtype a network layer (``conv`` reading ``x``, its first source, then ``norm``)
    runs the fused convolution in, or None: its module runs it. ``gradient``: whether the
    network's call wants one (fastp2p.nn.folding.gradient_wanted). ``size``: the (H, W) the
    layer's input will have, where x is the network's input, standing for the batch, device
    and dtype (``layer_plan``); default x's."""
    if not _fusable(conv):
        return None
    input_shape = None if size is None else (x.shape[0], conv.in_channels, *size)
    return fused_conv_dtype(
        x, conv.weight, stride=conv.stride[0], padding=conv.padding[0], norm=_norm_name(norm),
        gradient=gradient, transposed=isinstance(conv, nn.ConvTranspose2d),
        input_shape=input_shape)


def layer_plan(layers, x: torch.Tensor, gradient: bool) -> Optional[list]:
    """The ``fused_layer_dtype`` of each of a network's ``layers`` — (conv, the norm after it,
    the (H, W) of its input), one per convolution — asked before the forward runs, x being the
    network's input; None where it gives no layer to the fused convolution: the conv choice
    lists none of this forward's layers (its keys are shapes: a layer of another network with
    the same ones is the same measured work), and the network runs today's forward, not the
    walk."""
    plan = [fused_layer_dtype(conv, norm, x, gradient, size) for conv, norm, size in layers]
    return plan if any(dtype is not None for dtype in plan) else None


def conv_output_size(conv: nn.Conv2d, size: Sequence[int]) -> tuple:
    """(H, W) of ``conv``'s output for an input of (H, W) ``size`` (torch's formula)."""
    if conv.padding == "same":
        return tuple(size)
    padding = (0, 0) if conv.padding == "valid" else conv.padding
    return tuple((s + 2 * p - d * (k - 1) - 1) // t + 1 for s, p, d, k, t in
                 zip(size, padding, conv.dilation, conv.kernel_size, conv.stride))


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """(N, C) or (C,) -> broadcastable over (N, C, H, W)."""
    return t[:, :, None, None] if t.dim() == 2 else t[None, :, None, None]


def apply_transform(x, transform: InputTransform, slope: float):
    """What a fused layer's prologue would apply, as torch ops (before a module layer); no
    dropout (a pending dropout goes through fastp2p.ops.norm_act)."""
    if transform.scale is not None:
        x = (x * _per_channel(transform.scale) + _per_channel(transform.shift)).to(x.dtype)
    if transform.activation == "leaky_relu":
        x = F.leaky_relu(x, slope)
    elif transform.activation == "relu":
        x = torch.relu(x)
    return x


def _scale_shift(norm, mean, rstd):
    """The next prologue's coefficients from this layer's statistics: scale = gamma * rstd,
    shift = beta - mean * scale (gamma 1, beta 0 without affine); (None, None) without a norm."""
    if mean is None:
        return None, None
    scale = rstd if norm.weight is None else norm.weight * rstd
    shift = -mean * scale if norm.bias is None else norm.bias - mean * scale
    return scale, shift


def fused_conv_norm(conv: nn.Module, norm: Optional[nn.Module], sources, transforms,
                    slope: float, dtype: torch.dtype, output_activation: str = "none"):
    """conv_norm_act of one layer: (pre-norm output, scale, shift) with the next prologue's
    coefficients of ``norm`` (None, None without one); ``output_activation`` "tanh" (a layer
    without norm): the output through the epilogue's tanh. ``conv``: nn.Conv2d, or
    nn.ConvTranspose2d reading its one or two sources as one concatenation. ``dtype``: what
    the conv choice computes the layer in (``fused_conv_dtype``). Under autocast the layer runs
    as autocast runs the module's conv: sources, weight and bias cast to ``dtype`` (the casts
    carry the gradients back to the float32 parameters), the op itself outside autocast, the
    statistics, scale/shift and running buffers float32. Batch norm in training updates its
    running buffers and counts the batch like nn.BatchNorm2d; in eval its running statistics
    give the coefficients."""
    sources = [x.to(dtype) for x in sources]
    weight, bias = conv.weight.to(dtype), None if conv.bias is None else conv.bias.to(dtype)
    with torch.autocast(sources[0].device.type, enabled=False):
        return _fused_conv_norm(conv, norm, sources, transforms, weight, bias, slope,
                                output_activation)


def _fused_conv_norm(conv, norm, sources, transforms, weight, bias, slope: float,
                     output_activation: str):
    name = _norm_name(norm)
    if output_activation != "none" and name != "none":  # (eval batch norm runs norm="none")
        raise ValueError(f"fused_conv_norm: output_activation={output_activation!r} is for a "
                         f"layer without norm, got {with_article(type(norm).__name__)}")
    geometry = dict(stride=conv.stride[0], padding=conv.padding[0], slope=slope,
                    transposed=isinstance(conv, nn.ConvTranspose2d),
                    output_activation=output_activation)
    batch = name == "batch"
    if batch and uses_running_stats(norm):
        # eval batch norm with its buffers (as torch decides: fastp2p.nn.batch_statistics): the
        # running statistics are constants of the next prologue
        y, _, _ = conv_norm_act(sources, transforms, weight, bias, norm="none", **geometry)
        rstd = torch.rsqrt(norm.running_var.float() + norm.eps)
        return (y, *_scale_shift(norm, norm.running_mean.float(), rstd))
    tracking = batch and updates_running_stats(norm)
    running = dict(running_mean=norm.running_mean, running_var=norm.running_var,
                   momentum=norm.momentum) if tracking else {}
    if tracking:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
    y, mean, rstd = conv_norm_act(sources, transforms, weight, bias, norm=name,
                                  eps=norm.eps if name != "none" else 1e-5, **running,
                                  **geometry)
    return (y, *_scale_shift(norm, mean, rstd))


def _fused_layer(layer: _Layer, x, transform: InputTransform, slope: float, dtype):
    """One stack layer through the fused convolution in ``dtype``: its pre-norm output and the
    next layer's prologue (this norm's scale/shift, then the layer's LeakyReLU if it has one)."""
    y, scale, shift = fused_conv_norm(layer.conv, layer.norm, [x], [transform], slope, dtype)
    return y, InputTransform(scale, shift, "leaky_relu" if layer.slope is not None else "none")


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


def _stack_plan(layers, x, gradient: bool) -> Optional[list]:
    """``layer_plan`` of the stack's layers, each conv's input size from the one before."""
    sizes = [tuple(x.shape[2:])]
    for layer in layers[:-1]:
        sizes.append(conv_output_size(layer.conv, sizes[-1]))
    return layer_plan([(layer.conv, layer.norm, size) for layer, size in zip(layers, sizes)],
                      x, gradient)


def conv_stack_forward(seq: nn.Sequential, x):
    """The discriminator stack ``seq`` (already checked by ``sequential_supported``), each
    layer through the fused convolution or its module as the conv choice says; where it says
    module for every layer, ``sequential_forward`` (``layer_plan``)."""
    layers = _layers(seq)
    if layers is None:
        return sequential_forward(seq, x)
    fold = not gradient_wanted(seq, x)
    plan = _stack_plan(layers, x, not fold)
    if plan is None:
        return sequential_forward(seq, x)
    transform, slope = IDENTITY, 0.2
    for layer, dtype in zip(layers, plan):
        if dtype is not None:
            x, transform = _fused_layer(layer, x, transform, slope, dtype)
        else:
            x, transform = _module_layer(layer, apply_transform(x, transform, slope),
                                         fold), IDENTITY
        slope = layer.slope if layer.slope is not None else 0.2
    return apply_transform(x, transform, slope)
