"""A second CUDA stream inside the training step (``Pix2PixEngine(side_streams=True)``, issue 17).

What runs on it, and why the step's updates stay the serial step's bit for bit:

- **D on the real pair** (the concatenation, D's forward and, unfused, the D_real loss):
  ``logits_real`` depends only on real_A, real_B and D's weights before its update. The same
  kernels run on the same data; only the order of independent work changes. Autograd
  runs each backward op on the stream of its forward op, and at every gradient accumulation
  it makes the consumer stream wait on the producer's and records the gradient's memory on it
  (``InputBuffer::add`` in torch/csrc/autograd/input_buffer.cpp; "Stream semantics of backward
  passes" in PyTorch's CUDA notes); the backward call's own stream waits on the streams that
  accumulated into leaves. So one ``backward`` over both pairs runs the real pair's share of
  D's backward on the side stream, beside the fake pair's, and each D parameter's gradient is
  the same sum of its two contributions (a + b == b + a in floating point; so is fake_B's
  gradient from the G step's GAN and L1 terms).
- **When the fork happens.** A BatchNorm in training updates its running statistics in the
  forward, fake pair then real pair in the serial step, and ``(1-m)((1-m)r + m s_f) + m s_r``
  is not symmetric in the two batches' statistics: the order matters. So when D keeps any
  buffer (running statistics: the default PatchGAN) or draws random numbers (dropout), the
  side stream starts after D's forward on the fake pair has been issued, which keeps every
  such write and draw in the serial order; the real pair then overlaps the main stream's
  remaining D-step work and, above all, the fake pair's backward. When D keeps no buffer and
  draws nothing (e.g. instance norm), its real-pair forward has no effect on any state, so the
  side stream starts at the top of the step and runs beside G's forward as well
  (``real_pair_may_start_first``).
- **On the main stream meanwhile**: the D_fake loss and the G step's L1 term, which needs only
  fake_B and real_B (nothing of D's update), so it is computed before the join instead of in
  the G step: the same op on the same tensors.
- Memory. Gradients cross streams inside the backward, where autograd syncs and records
  them. Otherwise tensors cross only at the fork and the joins: what the side stream reads
  from the main one (real_A / real_B in D's pair dtype, D's weights and running buffers) was
  written before the fork and stays referenced until the step returns, after the joins; what
  the side stream made and the main stream then uses (``logits_real``, the D_real loss) is
  ``record_stream``-ed on the main stream at the join, so the caching allocator (and a CUDA
  graph's private pool) cannot give its memory to new side-stream work while the main stream
  may still read it. Every step's side-stream work comes after a fork, which waits for all
  main-stream work issued before it, so memory freed by the main stream in one step is never
  read late by the side stream in the next.

Inside ``torch.cuda.graph`` the fork (the side stream waits on an event recorded on the
capturing stream) pulls the side stream into the capture, and the joins (the capturing stream
waits on the side stream, once before D's loss sum or fused loss op, once after D's backward)
bring it back before capture ends: the two-stream step is one graph, replayed as a whole.

One numerical difference, outside any captured step: an eager bf16 step without side streams
casts D's weights once for both pairs (autocast's cache), so their two weight gradients meet
in bf16; with side streams each pair casts its own on its own stream (a shared cast would make
one stream wait for the other), as every captured step does since autocast's cache is off
there, and the two gradients meet in float32.

``StepStreams`` is the seam the engine's step body calls: ``fork``, ``side`` and ``join``.
``SideStream`` is the CUDA one; a test can put a recorder in its place to check, on a CPU,
what runs where and in which order.
"""
import contextlib
from typing import Protocol

import torch
import torch.nn as nn


class StepStreams(Protocol):
    def fork(self) -> None:
        """From here on the side stream may run what the main stream has issued so far."""

    def side(self) -> contextlib.AbstractContextManager:
        """Work issued inside this context runs on the side stream."""

    def join(self, *made_on_side: torch.Tensor) -> None:
        """The main stream waits for everything issued on the side stream so far; the given
        tensors, made on the side stream, are used on the main stream from now on."""


class SideStream:
    """``StepStreams`` on one CUDA device: one side stream, created once (a captured graph
    replays the streams it was captured with)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def fork(self) -> None:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))

    def side(self):
        return torch.cuda.stream(self.stream)

    def join(self, *made_on_side: torch.Tensor) -> None:
        main = torch.cuda.current_stream(self.device)
        main.wait_stream(self.stream)
        for tensor in made_on_side:
            tensor.record_stream(main)


def real_pair_may_start_first(netD: nn.Module) -> bool:
    """Whether D's forward on the real pair may run before G's forward and D's forward on the
    fake pair without changing any update: D keeps no buffer (BatchNorm's running statistics
    are updated fake pair first) and has no dropout (random draws in a different order)."""
    if any(True for _ in netD.buffers()):
        return False
    return not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in netD.modules())
