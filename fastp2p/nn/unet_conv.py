"""The U-Net forward with the fused convolution (fastp2p.ops.conv_norm_act) on the layers the
conv choice gives it (fastp2p.ops.backends.conv_choice: none by default, every one with
FASTP2P_CONV=fused), over the reference module tree (same parameters as fastp2p.nn.fused).
fastp2p.UNet calls it only for a forward the choice may give a layer of (``may_fuse``: the
override, or a table listing a layer for this device, direction, dtype and batch size); any
other runs fastp2p.nn.fused.unet_forward, and so does this walk where the choice, asked for
each conv before any runs (``_unet_plan``), gives it none (the table's layers are another
network's): unet_forward has CPU inference forms (packed oneDNN weights, channels-last
compute, the decoder's phase form writing into the concatenation) that this walk's module
layers do not have.

A fused down conv reads its level's input before that input's norm: its prologue applies the
norm's scale/shift and the LeakyReLU, its epilogue gives its own norm's statistics. A fused
decoder conv (transposed) reads two sources instead of a concatenation: the skip (the level's
input, scale/shift + ReLU) and the up tensor (the inner level's pre-norm output, scale/shift +
dropout mask + ReLU). Between fused layers the normalised activation is never written. A fused
outermost conv applies the network's Tanh in its epilogue (and folds the tanh's backward into
its own); a module outermost conv's output goes through torch.tanh.

Each tensor travels as a ``_Source``: the tensor and what its consumers still have to apply. A
layer left to its module runs as in ``fastp2p.nn.fused._unet_level`` (module conv, norm_act /
norm_act_concat), after plain torch ops apply a scale/shift a fused layer left pending; a module
up conv leaves its norm (and the block's dropout) to its consumer, as today's path does.
Dropout masks are the counter RNG's, drawn in today's order (innermost level first), so
FASTP2P_CONV=fused and today's path drop the same elements.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from fastp2p.nn.folding import gradient_wanted
from fastp2p.nn.fused import DropoutRNG, conv_norm, unet_forward
from fastp2p.nn.fused_conv import apply_transform, conv_output_size, fused_conv_norm, layer_plan
from fastp2p.ops import norm_act, norm_act_concat
from fastp2p.ops.aligned_channels import conv2d
from fastp2p.ops.conv_norm_act import InputTransform
from fastp2p.ops.conv_transpose import conv_transpose2d

NO_DROPOUT = (0.0, 0, 0)


class _Source(NamedTuple):
    """A layer's output as its consumers read it: dropout(act(x * scale + shift)) or, with a
    module norm pending, dropout(act(norm_act's norm of x)). At most one of scale/shift and
    ``norm`` is set; ``activated`` says which activation x already went through (then neither
    is set)."""
    x: torch.Tensor
    scale: Optional[torch.Tensor] = None  # a fused layer's norm coefficients, (N, C) or (C,)
    shift: Optional[torch.Tensor] = None
    norm: Optional[dict] = None           # a module layer's norm: norm_act's keyword arguments
    activated: str = "none"               # "none" | "leaky_relu" | "relu" | "tanh" (output)
    dropout: tuple = NO_DROPOUT           # (p, seed, offset) of the block's Dropout


def _still_to_apply(source: _Source, activation: str) -> str:
    """The consumer's activation on top of what x went through: none when x went through it
    already (a module layer applied it), else the activation itself — a LeakyReLU'd skip read
    by a ReLU consumer gets the ReLU, since relu(leaky_relu(x)) = relu(x)."""
    if source.activated == activation:
        return "none"
    if source.activated == "relu":
        raise AssertionError(f"a ReLU'd tensor read with {activation}")  # never built
    return activation


def _affine(source: _Source) -> torch.Tensor:
    return apply_transform(source.x, InputTransform(source.scale, source.shift), 0.0)


def _materialized(source: _Source, activation: str, slope: float) -> torch.Tensor:
    """What a module conv reads from ``source`` with ``activation`` before it."""
    activation = _still_to_apply(source, activation)
    p, seed, offset = source.dropout
    if source.norm is None and activation == "none" and p == 0:
        return _affine(source)
    return norm_act(_affine(source), **(source.norm or dict(norm="none")), activation=activation,
                    slope=slope, dropout_p=p, seed=seed, offset=offset)


def _fused_input(source: _Source, activation: str, slope: float):
    """(tensor, InputTransform) of ``source`` for a fused prologue; a pending module norm is
    applied first (norm_act, with the activation and dropout)."""
    if source.norm is not None:
        return _materialized(source, activation, slope), InputTransform()
    activation = _still_to_apply(source, activation)
    return source.x, InputTransform(source.scale, source.shift, activation, *source.dropout)


def _module_decoder_input(sources, slope: float) -> torch.Tensor:
    """The input of a module transposed conv: relu(x) of the innermost down conv, or
    ``norm_act_concat``'s cat([relu(skip), relu(dropout(norm(up)))]) — today's buffer."""
    if len(sources) == 1:
        return _materialized(sources[0], "relu", slope)
    skip, up = sources
    p, seed, offset = up.dropout
    return norm_act_concat(_affine(skip), _affine(up), **(up.norm or dict(norm="none")),
                           activation="relu", dropout_p=p, seed=seed, offset=offset)


def _fused(conv, norm, sources, activation: str, slope: float, dtype,
           output_activation: str = "none") -> _Source:
    inputs = [_fused_input(s, activation, slope) for s in sources]
    y, scale, shift = fused_conv_norm(conv, norm, [x for x, _ in inputs],
                                      [t for _, t in inputs], slope, dtype, output_activation)
    return _Source(y, scale, shift, activated=output_activation)


def _down(conv, norm, source: _Source, activation: str, out_activation: str, slope: float,
          fold: bool, dtype, out_slope: float = 0.0) -> _Source:
    """A direct conv (with ``activation``, of ``slope``, before it) and its norm, fused in
    ``dtype`` (its plan's; None: its module). Module path: today's norm_act(conv, norm,
    ``out_activation``) — what the level below reads (a leaky_relu: the level below's
    LeakyReLU, of ``out_slope``)."""
    if dtype is not None:
        return _fused(conv, norm, [source], activation, slope, dtype)
    x = _materialized(source, activation, slope)
    if norm is None:
        y, kwargs = conv2d(conv, x), dict(norm="none")
    else:
        y, kwargs = conv_norm(conv2d, conv, norm, x, fold)
    return _Source(norm_act(y, **kwargs, activation=out_activation, slope=out_slope),
                   activated=out_activation)


def _up(conv, norm, sources, slope: float, fold: bool, dtype,
        output_activation="none") -> _Source:
    """A transposed conv of ReLU'd sources, fused in ``dtype`` as ``_down``; its norm is left
    to the consumer. The outermost one (no norm) ends in ``output_activation`` "tanh": the
    fused kernel's epilogue, or torch.tanh after the module conv."""
    if dtype is not None:
        return _fused(conv, norm, sources, "relu", slope, dtype, output_activation)
    x = _module_decoder_input(sources, slope)
    if norm is None:
        y = conv_transpose2d(conv, x)
        return _Source(torch.tanh(y) if output_activation == "tanh" else y,
                       activated=output_activation)
    y, kwargs = conv_norm(conv_transpose2d, conv, norm, x, fold)
    return _Source(y, norm=kwargs)


def _norm(module: nn.Module) -> Optional[nn.Module]:
    return None if isinstance(module, nn.Identity) else module


def _level(block, source: _Source, rng: DropoutRNG, fold: bool, plan):
    """A non-outermost level of input ``source``: (skip, up), the two sources the parent's
    transposed conv reads (the block's cat([x, up])). ``plan``: an iterator over the dtypes of
    ``_unet_plan``, at this level's down conv."""
    m = block.model
    slope = m[0].negative_slope
    if isinstance(m[3], nn.ConvTranspose2d):  # innermost: [LeakyReLU, conv, ReLU, convT, norm]
        inner = _down(m[1], None, source, "leaky_relu", "relu", slope, fold, next(plan))
        return source, _up(m[3], _norm(m[4]), [inner], slope, fold, next(plan))
    down = _down(m[1], _norm(m[2]), source, "leaky_relu", "leaky_relu", slope, fold, next(plan),
                 m[3].model[0].negative_slope)
    inner = list(_level(m[3], down, rng, fold, plan))
    up = _up(m[5], _norm(m[6]), inner, slope, fold, next(plan))
    dropout = m[7] if len(m) > 7 else None
    if dropout is not None and dropout.training and dropout.p > 0:
        # after the inner levels' draws, as fastp2p.nn.fused._unet_level takes them
        up = up._replace(dropout=(dropout.p, *rng.take(up.x.numel())))
    return source, up


def _level_convs(block):
    """(down conv, its norm, up conv, its norm, the next level or None) of a U-Net level."""
    m = block.model
    if block.outermost:  # [down conv, submodule, ReLU, up conv, Tanh]
        return m[0], None, m[3], None, m[1]
    if isinstance(m[3], nn.ConvTranspose2d):  # innermost: [LeakyReLU, conv, ReLU, convT, norm]
        return m[1], None, m[3], _norm(m[4]), None
    return m[1], _norm(m[2]), m[5], _norm(m[6]), m[3]


def _unet_plan(unet, input, gradient: bool):
    """``layer_plan`` of the U-Net's convs in the order the walk runs them: each level's down
    conv, outermost first, then each level's up conv, innermost first. A level's down conv
    reads the level's input; its up conv reads first the down conv's output (the skip the
    level below returns with its up tensor)."""
    downs, ups, size, block = [], [], tuple(input.shape[2:]), unet.model
    while block is not None:
        down, down_norm, up, up_norm, block = _level_convs(block)
        downs.append((down, down_norm, size))
        size = conv_output_size(down, size)
        ups.append((up, up_norm, size))
    return layer_plan(downs + ups[::-1], input, gradient)


def unet_conv_forward(unet, input):
    """fastp2p.UNet's forward (the network already checked by ``unet_supported``), each conv
    through the fused convolution or its module as the conv choice says; where it says module
    for every conv, fastp2p.nn.fused.unet_forward (``_unet_plan``)."""
    fold = not gradient_wanted(unet, input)
    plan = _unet_plan(unet, input, not fold)
    if plan is None:
        return unet_forward(unet, input)
    plan = iter(plan)
    outer = unet.model.model  # [down conv, submodule, ReLU, up conv, Tanh]
    rng = DropoutRNG(unet.dropout_rng)
    slope = outer[1].model[0].negative_slope
    down = _down(outer[0], None, _Source(input), "none", "leaky_relu", slope, fold, next(plan),
                 slope)
    inner = list(_level(outer[1], down, rng, fold, plan))
    return _up(outer[3], None, inner, slope, fold, next(plan), "tanh").x
