"""Stand-ins: a convolution's settings with another weight (a copy in another layout, a
BatchNorm fold, a packed oneDNN weight), for CPU float32 inference.

A stand-in is never registered on a network and never trained: ``state_dict``, ``parameters()``
and autograd see only the real module. fastp2p.nn.folding caches them; the convolution routes
(fastp2p.ops.aligned_channels, fastp2p.ops.conv_transpose) run them. A layout is
``torch.preserve_format`` (the weight as it is), another memory format, ``PACKED`` (reordered
once for oneDNN, fastp2p.ops.onednn_packed) or ``PHASES`` (a transposed convolution as its four
phases' packed convolution, fastp2p.ops.deconv_phases).
"""
from typing import Optional

import torch
import torch.nn as nn

from fastp2p.ops import deconv_phases, onednn_packed

PACKED = "onednn_packed"
PHASES = "onednn_phases"
OPAQUE_LAYOUTS = (PACKED, PHASES)  # not memory formats: always a stand-in


def conv_settings(conv: nn.Module) -> tuple:
    """What ``conv``'s forward reads besides its weight and bias, which a stand-in copies: part
    of the key a stand-in is cached under (fastp2p.nn.folding), so that a setting changed after
    the first call (``conv.padding_mode = "reflect"``, ``conv.padding = (2, 2)``) rebuilds it.
    ``_reversed_padding_repeated_twice`` is torch's padding for non-zero padding modes, fixed
    when the module was built: the module keeps using it after ``padding`` changes, and so does
    its stand-in."""
    return (conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode,
            getattr(conv, "output_padding", None), conv._reversed_padding_repeated_twice)


def require_input_size(layout, input_size) -> None:
    """ValueError unless an opaque ``layout`` comes with the input size it is packed for."""
    if layout in OPAQUE_LAYOUTS and input_size is None:
        raise ValueError(f"a {layout} stand-in is packed for one input size: pass input_size")


def stand_in(conv: nn.Module, weight: torch.Tensor, bias: Optional[torch.Tensor],
             layout=torch.preserve_format, input_size=None) -> nn.Module:
    """A module of conv's type and settings whose parameters are ``weight`` (laid out as conv's
    weight: conv's own, or its fold) in ``layout`` and ``bias``; for ``PHASES``, a
    ``deconv_phases.PhasedConvTranspose2d``. The opaque layouts are packed for inputs of
    ``input_size`` (N, C, H, W; required for them). Built on the meta device, so nothing is
    allocated or initialised for it."""
    cls, weight = type(conv), weight.detach()
    require_input_size(layout, input_size)
    if layout == PHASES:
        cls, (weight, bias) = deconv_phases.PhasedConvTranspose2d, deconv_phases.pack(
            conv, weight, bias, input_size)
    elif layout == PACKED:
        weight = onednn_packed.pack(conv, weight, input_size)
    elif layout != torch.preserve_format:
        weight = weight.contiguous(memory_format=layout)
    settings = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                    groups=conv.groups, padding_mode=conv.padding_mode,
                    bias=bias is not None, device="meta")
    if isinstance(conv, nn.ConvTranspose2d):
        settings["output_padding"] = conv.output_padding
    module = cls(conv.in_channels, conv.out_channels, conv.kernel_size, **settings)
    module._reversed_padding_repeated_twice = conv._reversed_padding_repeated_twice
    module.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        module.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return module
