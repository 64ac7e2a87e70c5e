"""A convolution whose backward computes its data gradient (dgrad) and its weight and bias
gradients (wgrad) concurrently, on two CUDA streams (``Pix2PixEngine(split_conv_backward=True)``,
issue 17 item 2).

A convolution's autograd node computes both gradients in one ``convolution_backward`` call, and
cuDNN runs the two as consecutive kernels on one stream, though neither reads the other's
result. At batch 1 both are small, latency-bound kernels, so running them side by side fills
the GPU better. ``SplitBackwardConvolution`` runs today's forward and, in its backward, issues
the wgrad (``convolution_backward`` with output mask [False, w, b]) on a side stream and the
dgrad ([True, False, False]) on the current stream, then joins.

Why the gradients are today's bit for bit:

- **The same kernels.** ``convolution_backward`` with both masks set is, on cuDNN,
  ``cudnn_convolution_backward_input`` then ``cudnn_convolution_backward_weight``, each
  computed only where its mask bit is set (aten/src/ATen/native/cudnn/ConvShared.cpp), and the
  bias gradient is the same sum of grad_output in both cases; on CPUs oneDNN's data and weight
  primitives are separate as well. tests/test_split_conv_backward.py checks every layer of
  the tiny U-Net and PatchGAN the CPU training tests use (batch and instance norm, so with and
  without bias): split and combined give equal bits, float32 and bfloat16, both memory
  formats, 1 and 2 threads. The GPU test (test_engine_split_conv_backward_cuda.py, not yet
  run) checks whole bf16 channels-last training steps with cuDNN.
- **The same forward.** ``aten.convolution`` is what ``F.conv2d`` / ``F.conv_transpose2d``
  call. Under autocast the floating inputs are cast here, in the autograd graph, to autocast's
  dtype before the node (autocast casts conv arguments so: float64 excepted), so the node sees
  the dtypes the plain call's node sees and the casts' backward (bf16 gradient -> float32) is
  the plain graph's. One difference remains, and only where autocast's weight-cast cache is on
  (an eager bf16 step; the engine turns the cache off in a captured step): a weight used twice
  in one autocast region (D on the fake and the real pair) is cast twice here instead of once,
  so its two gradient contributions meet in float32 instead of bfloat16 - the difference
  ``fastp2p.train.step_streams`` documents for side streams.
- **Streams.** Autograd runs the node on the stream its forward ran on and treats the node's
  outputs as produced there. So the side stream first waits for the current stream (the
  node's inputs: grad_output, the saved input and weight, are ready there), and the current
  stream waits for the side stream before the node returns: whoever consumes the weight
  gradient (gradient accumulation, the optimizer, DDP would) then reads it after it is written,
  with autograd's own cross-stream rules unchanged. The wgrad tensors are allocated on the side
  stream and ``record_stream``-ed on the current one (the join). The tensors the side stream
  reads (grad_output, the saved input and weight) need no ``record_stream``: the node holds
  them until it returns, after the join, so they are freed after it; memory of the current
  stream is then reused only by work queued behind the join, and a tensor from another stream
  already carries a ``record_stream`` on the current one (autograd's, at a cross-stream
  gradient; the side-streams join), whose event, recorded at the free, also comes after the
  join. A join later than the node's end (a layer's wgrad running on beside the next layer's
  dgrad) would not be safe without more machinery: autograd adds a weight's two contributions
  (D's fake and real pair) on the node's stream, which would not wait for the side stream.

Only where it can overlap: both the input and the weight (or bias) want a gradient, groups 1,
zero padding. G's first convolution (no input gradient) and the frozen D of the generator step
(no weight gradient) run as before, as does everything outside ``within(...)``: inference and a
user's forward never pay more than one global lookup per convolution. A backward that builds a
graph (``create_graph=True``, a gradient penalty) does not split: it runs the combined call on
the current stream, which aten differentiates.

``within(streams)`` is entered by the engine around its step body; ``streams`` is a
``WgradStreams``: for the current stream, the fork / side / join (``StepStreams`` of
``fastp2p.train.step_streams``) of the side stream that runs its wgrads. Tests pass a recorder.
The setting is process-wide, for the step's duration (a module global: one lookup per call,
and one that ``torch.compile`` can guard on); the Function is used only on the streams'
device.
"""
import contextlib
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

_aten = torch.ops.aten


class WgradStreams(Protocol):
    device: torch.device

    def for_current_stream(self):
        """The ``StepStreams`` (fork / side / join) whose side stream runs the wgrad of a
        backward node running on the current stream."""


_active: WgradStreams | None = None


@contextlib.contextmanager
def within(streams: WgradStreams | None):
    """Module convolutions with a gradient wanted split their backward, on ``streams``, inside
    this context (nothing changes when ``streams`` is None)."""
    global _active
    previous, _active = _active, streams
    try:
        yield
    finally:
        _active = previous


def _splits(x: torch.Tensor, weight: torch.Tensor, bias) -> bool:
    return (torch.is_grad_enabled() and x.requires_grad
            and (weight.requires_grad or (bias is not None and bias.requires_grad))
            and x.device == _active.device)


def _as_autocast_computes(t):
    """``t`` in the dtype autocast gives a convolution's floating argument (itself outside
    autocast, and for float64, which autocast leaves)."""
    if t is None or not t.is_floating_point() or t.dtype == torch.float64:
        return t
    device = t.device.type
    if not torch.is_autocast_enabled(device):
        return t
    return t.to(torch.get_autocast_dtype(device))


class SplitBackwardConvolution(torch.autograd.Function):
    """``aten.convolution``, whose backward runs dgrad on the current stream and wgrad on the
    side stream of ``streams.for_current_stream()``, joined before it returns."""

    @staticmethod
    def forward(ctx, x, weight, bias, streams, stride, padding, dilation, transposed,
                output_padding):
        ctx.save_for_backward(x, weight)
        ctx.streams = streams
        ctx.conv = (None if bias is None else list(bias.shape), stride, padding, dilation,
                    transposed, output_padding, 1)
        return _aten.convolution(x, weight, bias, stride, padding, dilation, transposed,
                                 output_padding, 1)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        want_x, want_weight, want_bias = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            # create_graph=True (a gradient penalty): the plain combined call, which aten
            # differentiates (convolution_backward has a double-backward formula), on the current
            # stream only, so that the new graph's nodes hold no side-stream work.
            grad_x, grad_weight, grad_bias = _aten.convolution_backward(
                grad_output, x, weight, *ctx.conv, [want_x, want_weight, want_bias])
            return grad_x, grad_weight, grad_bias, None, None, None, None, None, None
        streams = ctx.streams.for_current_stream()
        streams.fork()
        with streams.side():
            _, grad_weight, grad_bias = _aten.convolution_backward(
                grad_output, x, weight, *ctx.conv, [False, want_weight, want_bias])
        grad_x, _, _ = _aten.convolution_backward(grad_output, x, weight, *ctx.conv,
                                                  [True, False, False])
        streams.join(*(g for g in (grad_weight, grad_bias) if g is not None))
        return grad_x, grad_weight, grad_bias, None, None, None, None, None, None


def _convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding):
    x, weight, bias = (_as_autocast_computes(t) for t in (x, weight, bias))
    return SplitBackwardConvolution.apply(x, weight, bias, _active, list(stride),
                                          list(padding), list(dilation), transposed,
                                          list(output_padding))


def module_applies(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module(x)`` (a Conv2d or ConvTranspose2d) runs as ``module_convolution``: inside
    ``within`` with streams, gradients wanted for the input and the weight or bias, on the
    streams' device, groups 1 and zero padding. (The module's forward hooks are not called
    then, as on the other routed paths: packed weights, padded channels.)"""
    return (_active is not None and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str) and _splits(x, module.weight, module.bias))


def module_convolution(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` through ``SplitBackwardConvolution`` (where ``module_applies``)."""
    transposed = isinstance(module, nn.ConvTranspose2d)
    output_padding = module.output_padding if transposed else (0, 0)
    return _convolution(x, module.weight, module.bias, module.stride, module.padding,
                        module.dilation, transposed, output_padding)


def conv2d(x, weight, bias, stride, padding, dilation):
    """``F.conv2d`` (groups 1), through ``SplitBackwardConvolution`` where it splits."""
    if _active is not None and _splits(x, weight, bias):
        return _convolution(x, weight, bias, stride, padding, dilation, False, (0, 0))
    return F.conv2d(x, weight, bias, stride, padding, dilation)


def conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation):
    """``F.conv_transpose2d`` (groups 1), through ``SplitBackwardConvolution`` where it
    splits."""
    if _active is not None and _splits(x, weight, bias):
        return _convolution(x, weight, bias, stride, padding, dilation, True, output_padding)
    return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, 1, dilation)
