"""oneDNN convolutions with the weight reordered once, for CPU float32 inference (issue 15 item 4).

torch's CPU convolution hands oneDNN a plain (NCHW or channels-last) weight, and oneDNN reorders
it into its blocked layout on every call. At the U-Net's inner layers (512 channels on 1x1 to
16x16 maps) that reorder moves more bytes than the convolution itself: packed once, the 8 encoder
convolutions of U-Net-256 at batch 1 took 15.7 ms instead of 20.9 (2 threads, 2-core Xeon;
benchmarks/NOTES.md, "CPU inference with packed oneDNN weights"). ``pack`` does that reorder
once, with ``torch.ops.mkldnn._reorder_convolution_weight`` (what torch.compile's freezing pass
uses on CPUs), into an opaque oneDNN tensor; ``run`` computes with it through
``torch.ops.mkldnn._convolution_pointwise`` (or its transposed twin).

The packed layout is the one oneDNN's convolution picks for one input size, so ``pack`` takes
that size. A weight packed for another size (or for none: torch's default of a made-up size) can
be in a blocked layout that the convolution for the real input does not take, and then oneDNN
reorders it on every call after all, through its slow generic reorder: on a 2-core AMD EPYC of
family 23 (Zen 1, AVX2) a U-Net-256 forward took 3x the reference's time that way, 0.3-1.2 s per
inner layer (benchmarks/NOTES.md, "Stop 46"). Callers pack again for each new input size
(fastp2p.nn.folding keys its stand-ins on it), for up to 4 sizes a layer; later sizes run
unpacked until one of those has gone unused (fastp2p.nn.folding._Kept).

Callers keep the packed tensor in place of the weight of a stand-in module
(fastp2p.nn.folding); ``is_packed`` tells the convolution routes (fastp2p.ops.aligned_channels,
fastp2p.ops.conv_transpose) to come here. Same math as ``F.conv2d`` / ``F.conv_transpose2d``:
the same oneDNN kernels, without the per-call reorder.
"""
import functools

import torch
import torch.nn as nn

from fastp2p.ops.switches import Switch

_OPS = ("_reorder_convolution_weight", "_reorder_convolution_transpose_weight",
        "_convolution_pointwise", "_convolution_transpose_pointwise")


_packing = Switch()


def packing_disabled():
    """``with packing_disabled():`` runs the plain convolutions inside the block, in this
    thread (what the benchmarks compare packing against); packing resumes after it."""
    return _packing.off()


@functools.cache
def _built_with_ops() -> bool:
    """Whether this torch build has oneDNN and the private ops used here (they are torch's
    internal inductor ops: a build without them runs the plain convolutions instead)."""
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, name) for name in _OPS)


def available() -> bool:
    """Whether packing is on and this torch build can do it (asked per convolution call)."""
    return _packing.on and _built_with_ops()


def is_packed(weight: torch.Tensor) -> bool:
    return weight.is_mkldnn


def _settings(conv: nn.Module) -> tuple:
    return list(conv.padding), list(conv.stride), list(conv.dilation)


def pack(conv: nn.Module, weight: torch.Tensor, input_size) -> torch.Tensor:
    """``weight`` (float32, any memory format, laid out as ``conv``'s) reordered once into the
    layout oneDNN computes ``conv`` with on channels-last inputs of ``input_size`` (N, C, H, W;
    torch's reorder assumes channels-last when given a size, as CPU inference computes: another
    input layout gives the same numbers, oneDNN reordering the weight for it)."""
    padding, stride, dilation = _settings(conv)
    weight, input_size = weight.detach(), list(input_size)
    if isinstance(conv, nn.ConvTranspose2d):
        return torch.ops.mkldnn._reorder_convolution_transpose_weight(
            weight, padding, list(conv.output_padding), stride, dilation, conv.groups,
            input_size)
    return torch.ops.mkldnn._reorder_convolution_weight(
        weight, padding, stride, dilation, conv.groups, input_size)


def applies(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` can run on ``x`` with a packed weight: float32 on a CPU, zero padding."""
    return (x.is_cpu and x.dtype == torch.float32 and x.dim() == 4
            and conv.padding_mode == "zeros" and available()
            and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
            and not isinstance(conv.padding, str))


def run(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor,
        bias: "torch.Tensor | None") -> torch.Tensor:
    """``conv``'s convolution of ``x`` with ``pack``'s ``weight`` and ``bias`` (no autograd);
    the output is channels-last for a channels-last ``x``."""
    padding, stride, dilation = _settings(conv)
    bias = None if bias is None else bias.detach()
    if isinstance(conv, nn.ConvTranspose2d):
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x, weight, bias, padding, list(conv.output_padding), stride, dilation,
            conv.groups, "none", [], "")
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, padding, stride, dilation, conv.groups, "none", [], "")
