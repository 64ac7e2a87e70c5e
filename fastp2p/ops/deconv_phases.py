"""The U-Net's transposed convolution (4x4, stride 2, padding 1) as one stride-1 2x2 convolution
with four times the output channels, for CPU float32 inference (issue 15 item 4).

Output pixel (2m + r, 2l + s) of a 4x4 stride-2 padding-1 transposed convolution reads input rows
m - 1 + r and m + r (kernel rows 3 - r and 1 - r) and likewise for columns: each of the four
output phases (r, s) is a 2x2 convolution of the input. All four are one 2x2 convolution with
padding 1, 4 x C_out output channels (phase by phase) and (H + 1) x (W + 1) outputs, of which
phase (r, s) reads the window starting at (r, s). oneDNN runs that convolution much faster than
its own deconvolution on some of the U-Net's layers (1024 -> 512 channels on 4x4 inputs at batch
1: 2.1 ms against 16.0; 2-core Xeon, benchmarks/NOTES.md "The transposed convolution as four
phases"), with the weight packed once (fastp2p.ops.onednn_packed). The phases are then written
into their interleaved places of the output — straight into the decoder's concatenation buffer,
with the consumer's activation applied on the way (``run_into``), so the interleave replaces a
copy the decoder makes anyway.

Which form each layer runs (this, oneDNN's deconvolution or the GEMM form) is measured per layer
shape and input shape: fastp2p.ops.conv_transpose.cpu_inference_form.
"""
import torch
import torch.nn as nn

from fastp2p.ops import onednn_packed
from fastp2p.ops.switches import Switch

_phases = Switch()


def phases_disabled():
    """``with phases_disabled():`` leaves the measured choice to the other forms inside the
    block, in this thread (what the benchmarks compare the phases against); the phases resume
    after it."""
    return _phases.off()

# The consumers' activations, written on the way (out= of a strided view).
_WRITES = {"none": lambda y, out: out.copy_(y),
           "relu": lambda y, out: torch.clamp_min(y, 0, out=out),
           "tanh": lambda y, out: torch.tanh(y, out=out)}


class PhasedConvTranspose2d(nn.ConvTranspose2d):
    """A stand-in of a transposed convolution (never trained, never registered on a network)
    whose ``weight`` is the packed weight of the four phases' 2x2 convolution and ``bias`` its
    bias, repeated per phase (``pack``)."""


def applies(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` is the U-Net's kind of transposed convolution and ``x`` a CPU float32
    batch that oneDNN's packed convolution takes."""
    return (_phases.on and type(conv) is nn.ConvTranspose2d and onednn_packed.applies(conv, x)
            and conv.kernel_size == (4, 4) and conv.stride == (2, 2) and conv.padding == (1, 1)
            and conv.output_padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1)


def phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """A ConvTranspose2d weight (C_in, C_out, 4, 4) as the phases' Conv2d weight
    (4 C_out, C_in, 2, 2), channels-last (the layout oneDNN packs from); output channel
    (2r + s) C_out + c is phase (r, s) of channel c. Tap (a, b) of phase (r, s) is kernel element
    (3 - r - 2a, 3 - s - 2b). Two copies: one blocked 2-D transpose (torch's copy blocks those)
    puts C_in innermost, then a gather of whole rows of C_in floats orders the taps; one strided
    permutation with C_in outermost took 1.3-2x as long (benchmarks/NOTES.md, "Remembering the
    measured forms")."""
    c_in, c_out = weight.shape[:2]
    rows = weight.reshape(c_in, c_out * 16).t().contiguous()  # row (c, kernel row, kernel col)
    phases = rows.index_select(0, _phase_rows(c_out))          # row (r, s, c, a, b)
    return phases.view(4 * c_out, 2, 2, c_in).permute(0, 3, 1, 2)


def _phase_rows(c_out: int) -> torch.Tensor:
    """For each row (r, s, c, a, b) of the phases' weight, its row (c, 3 - r - 2a, 3 - s - 2b)
    in the kernel's transpose."""
    r, s, c, a, b = torch.meshgrid(*(torch.arange(n) for n in (2, 2, c_out, 2, 2)),
                                   indexing="ij")
    return (c * 16 + (3 - r - 2 * a) * 4 + (3 - s - 2 * b)).reshape(-1)


_PHASE_CONV = nn.Conv2d(1, 4, 2, padding=1, bias=False, device="meta")  # the settings to pack


def pack(conv: nn.Module, weight: torch.Tensor, bias, input_size):
    """(packed weight, bias) of the phases' convolution for ``conv``'s ``weight`` and ``bias``
    (float32, possibly a BatchNorm fold), on inputs of ``input_size`` (oneDNN's layout for the
    weight depends on it: fastp2p.ops.onednn_packed)."""
    packed = onednn_packed.pack(_PHASE_CONV, phase_weight(weight.detach()), input_size)
    return packed, None if bias is None else bias.detach().repeat(4)


def write(y: torch.Tensor, out: torch.Tensor, activation: str) -> torch.Tensor:
    """``out = activation(y)`` ("none", "relu" or "tanh"), ``out`` any strided view."""
    return _WRITES[activation](y, out)


def output_shape(conv: nn.ConvTranspose2d, x: torch.Tensor) -> tuple:
    """The shape of ``conv(x)``: (N, C_out, 2H, 2W) for the U-Net's settings, and whatever a
    user set instead (e.g. an outermost padding of 2: the buffer the forms are timed into was
    2H x 2W, and torch resized it with a deprecation warning)."""
    sizes = (
        (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
        for size, stride, padding, dilation, kernel, output_padding in zip(
            x.shape[2:], conv.stride, conv.padding, conv.dilation, conv.kernel_size,
            conv.output_padding))
    return (x.shape[0], conv.out_channels, *sizes)


def run_into(conv: PhasedConvTranspose2d, x: torch.Tensor, out: torch.Tensor,
             activation: str = "none") -> torch.Tensor:
    """``out = activation(conv(x))`` for a ``PhasedConvTranspose2d``; ``out`` may be any strided
    (N, C_out, 2H, 2W) view, e.g. a channel slice of a concatenation buffer."""
    phases = onednn_packed.run(_PHASE_CONV, x, conv.weight, conv.bias)
    if activation == "tanh":
        # torch's tanh of a strided view with few channels (the U-Net's 3-channel output) runs
        # element by element: 6.3 ms at 256x256, against 1.65 for a tanh of the fresh phases
        # in place then the copies (2-core AMD EPYC, family 23, 1 thread; NOTES "Stop 47").
        # relu is the faster strided on the decoder's wider layers, measured the same way.
        phases.tanh_()
        activation = "none"
    c, (h, w) = conv.out_channels, x.shape[2:]
    for r in range(2):
        for s in range(2):
            k = 2 * r + s
            write(phases[:, k * c:(k + 1) * c, r:r + h, s:s + w], out[:, :, r::2, s::2],
                  activation)
    return out


def run(conv: PhasedConvTranspose2d, x: torch.Tensor, activation: str = "none") -> torch.Tensor:
    """``activation(conv(x))``, channels-last."""
    out = torch.empty(output_shape(conv, x), dtype=x.dtype, memory_format=torch.channels_last)
    return run_into(conv, x, out, activation)
