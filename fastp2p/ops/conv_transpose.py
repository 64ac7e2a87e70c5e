"""The U-Net decoder's transposed convolutions, routed per call.

On CPU tensors in float32, when no gradient is needed (inference) and the C++ backend serves
the device, ``conv_transpose2d`` runs the GEMM + col2im form (the C++ backend's ``conv_transpose2d_fwd``);
on a GPU, a layer whose output channel count is not a multiple of 8 (the U-Net's last, 3
channels) runs with zero-padded channels (``fastp2p.ops.aligned_channels``); everything else —
training on CPUs, other dtypes, unusual module settings — runs the module itself. Same numbers
every way, up to float32 summation order.
"""
import torch
import torch.nn as nn

from fastp2p.ops.aligned_channels import conv_transpose2d_channel_padded, pads_output
from fastp2p.ops.backends import backend_for


def _gemm_form_applies(module: nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    if not (x.is_cpu and x.dtype == torch.float32 and x.dim() == 4):
        return False
    params = [p for p in (module.weight, module.bias) if p is not None]
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return False
    square = module.kernel_size[0] == module.kernel_size[1]
    return (square and module.groups == 1 and module.padding_mode == "zeros"
            and module.dilation == (1, 1) and module.output_padding == (0, 0)
            and len(set(module.stride)) == 1 and len(set(module.padding)) == 1
            and all(p.dtype == torch.float32 for p in params)
            and backend_for(x.device).provides("conv_transpose2d_fwd"))


def conv_transpose2d(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``: through the C++ GEMM + col2im form where it applies (see the module doc),
    on a GPU with its output channels padded to a multiple of 8 where they are not
    (``fastp2p.ops.aligned_channels``)."""
    if _gemm_form_applies(module, x):
        return backend_for(x.device).conv_transpose2d_fwd(
            x, module.weight, module.bias, stride=module.stride[0], padding=module.padding[0])
    if pads_output(module, x):
        return conv_transpose2d_channel_padded(module, x)
    return module(x)
