"""Convolutions on the image side of the networks, with their channel counts padded to 8 on GPUs.

cuDNN's channels-last tensor-core kernels take channel counts in multiples of 8 (16-byte rows
of bf16). pix2pix's image-side layers have 3 channels (the U-Net's first convolution and its
last transposed convolution) or 6 (the PatchGAN's first convolution, on A and B side by side);
for those cuDNN pads on the fly (``nhwcAddPaddingKernel``) or falls back to a generic kernel
(``convolve_common_engine_float_NHWC``); their share of a step is in benchmarks/NOTES.md (run 1,
"Where the time goes"). Extra zero channels, in the input and in the weight, leave every sum
unchanged: same function, same gradients (the padding's gradients are dropped by the slices),
and the state_dict keeps the original shapes.
On CPUs the modules run as they are (padding would only add work there), or with a weight packed
for oneDNN (CPU float32 inference, fastp2p.ops.onednn_packed).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastp2p.ops import onednn_packed, split_conv_backward
from fastp2p.ops.definitions import like_memory_format

CHANNEL_MULTIPLE = 8


def _padding(channels: int) -> int:
    return -channels % CHANNEL_MULTIPLE


def _applies(module: nn.Module, x: torch.Tensor, channels: int) -> bool:
    return (x.is_cuda and _padding(channels) > 0 and module.groups == 1
            and module.padding_mode == "zeros")


def pads_input(module: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv2d`` pads this call's input channels."""
    return _applies(module, x, module.in_channels)


def pads_output(module: nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    """Whether this transposed convolution should run ``conv_transpose2d_channel_padded``."""
    return _applies(module, x, module.out_channels)


def _zero_pad_dim1(t: torch.Tensor, extra: int) -> torch.Tensor:
    """``t`` with ``extra`` zero slices appended along dim 1, in t's memory format (torch.cat
    keeps channels-last when all its inputs have it)."""
    return torch.cat((t, like_memory_format(t, extra).zero_()), 1)


def _as_computed(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the dtype autocast would run the convolution in (itself outside autocast):
    padding after that cast writes half the bytes of padding the float32 tensor, same values."""
    device = t.device.type
    if t.is_floating_point() and torch.is_autocast_enabled(device):
        return t.to(torch.get_autocast_dtype(device))
    return t


def conv2d_channel_padded(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` computed with the input channels zero-padded to a multiple of 8."""
    extra = _padding(module.in_channels)
    return split_conv_backward.conv2d(_zero_pad_dim1(_as_computed(x), extra),
                                      _zero_pad_dim1(_as_computed(module.weight), extra),
                                      module.bias, module.stride, module.padding,
                                      module.dilation)


def conv_transpose2d_channel_padded(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` computed with the output channels zero-padded to a multiple of 8, then
    sliced back (a view; the weight of a transposed convolution is (in, out, kH, kW))."""
    out_channels = module.out_channels
    extra = _padding(out_channels)
    bias = None if module.bias is None else F.pad(module.bias, (0, extra))
    y = split_conv_backward.conv_transpose2d(
        x, _zero_pad_dim1(_as_computed(module.weight), extra), bias, module.stride,
        module.padding, module.output_padding, module.dilation)
    return y[:, :out_channels]


def conv2d(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``: through oneDNN when its weight is packed (fastp2p.ops.onednn_packed); on a
    GPU with an input channel count that is not a multiple of 8, through zero-padded channels;
    inside the engine's step with ``split_conv_backward=True``, with its backward split
    (fastp2p.ops.split_conv_backward)."""
    if onednn_packed.is_packed(module.weight):
        return onednn_packed.run(module, x, module.weight, module.bias)
    if pads_input(module, x):
        return conv2d_channel_padded(module, x)
    if split_conv_backward.module_applies(module, x):
        return split_conv_backward.module_convolution(module, x)
    return module(x)
