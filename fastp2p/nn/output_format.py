"""The memory format the reference networks return, which the fused forwards (computing
channels-last where that is faster) give their outputs back in, strides included.

torch's rules, as the reference modules meet them: a convolution writes channels-last when its
input's or its weight's strides suggest it (``suggested_memory_format``), else NCHW; InstanceNorm
returns NCHW whatever its input (``F.instance_norm`` normalizes a contiguous copy), and so does a
BatchNorm of one channel (``returns_nchw``); other BatchNorms, the activations and Dropout keep
their input's format; ``torch.cat`` is channels-last only when every part is.
"""
import torch
import torch.nn as nn
from torch._prims_common import suggest_memory_format

CONTIGUOUS, CHANNELS_LAST = torch.contiguous_format, torch.channels_last


def suggested_memory_format(x) -> torch.memory_format:
    """``x.suggest_memory_format()`` of torch's C++ (from the strides' order: a channels-last
    tensor sliced is still channels-last, an NCHW one sliced or permuted contiguous), cheaply
    where x is dense in exactly one of the two formats (torch's Python equivalent costs
    microseconds)."""
    if x.is_contiguous():
        if not x.is_contiguous(memory_format=CHANNELS_LAST):
            return CONTIGUOUS
    elif x.is_contiguous(memory_format=CHANNELS_LAST):
        return CHANNELS_LAST
    return suggest_memory_format(x)


def conv_output_format(input_format, conv: nn.Module) -> torch.memory_format:
    """The format torch's convolution writes for an input suggesting ``input_format``."""
    if input_format is CHANNELS_LAST:
        return CHANNELS_LAST
    return suggested_memory_format(conv._parameters["weight"])


def returns_nchw(layer: nn.Module) -> bool:
    """Whether torch returns NCHW from ``layer`` whatever its input's format: an InstanceNorm,
    or a BatchNorm of one channel (its input is dense in both formats, and batch_norm's output
    takes the format torch suggests for it, NCHW)."""
    return isinstance(layer, nn.InstanceNorm2d) or (isinstance(layer, nn.BatchNorm2d)
                                                    and layer.num_features == 1)


def sequential_output_format(seq: nn.Sequential, input) -> torch.memory_format:
    """The format the discriminator stack ``seq`` (convolutions, norms, activations) returns
    for ``input`` in the reference forward."""
    memory_format = suggested_memory_format(input)
    for layer in seq:
        if isinstance(layer, nn.Conv2d):
            memory_format = conv_output_format(memory_format, layer)
        elif returns_nchw(layer):
            memory_format = CONTIGUOUS
    return memory_format


def _new_strides(shape, memory_format) -> tuple:
    """The strides of ``torch.empty(shape, memory_format=memory_format)``."""
    n, c, h, w = (max(s, 1) for s in shape)
    if memory_format is CHANNELS_LAST:
        return (h * w * c, 1, w * c, c)
    return (c * h * w, h * w, w, 1)


def in_memory_format(out: torch.Tensor, memory_format) -> torch.Tensor:
    """``out`` with the strides a new tensor of its shape in ``memory_format`` has: as it is, a
    view where it is dense in that format already but a size-1 dimension's stride differs (a
    one-channel logit map is dense in both formats), else a copy."""
    if not out.is_contiguous(memory_format=memory_format):
        return out.contiguous(memory_format=memory_format)
    strides = _new_strides(out.shape, memory_format)
    if out.stride() == strides:
        return out
    return out.as_strided(out.shape, strides)
