"""The written contract of a backend: the launcher signatures every backend module follows.

A backend is a module (``fastp2p.ops.backends.triton``, ``.cpp``, ``.reference``) that matches
``Backend`` below: ``NAME``, ``DTYPES``, ``available()`` and the launchers of the ops it
implements. Launchers take torch tensors, allocate what they return, and have no autograd;
the ops layer (``fastp2p/ops/<op>.py``) has already checked every argument (shapes, dtypes,
devices, names) before a launcher runs, so launchers do not check again. Seeds and offsets are
ints, or 0-dim int64 tensors on x's device (read when the kernel runs: what a CUDA graph replays).

A backend may leave out any launcher: the registry (``fastp2p.ops.backends``) then runs the
reference backend's for that op, with a one-time warning. tests/test_backend_contract.py checks
that every launcher a backend defines has exactly the signature written here.
"""
from typing import Optional, Protocol

import torch

Tensor = torch.Tensor


class Backend(Protocol):
    NAME: str                      # what FASTP2P_BACKEND calls it
    DTYPES: tuple                  # the input dtypes it computes exactly

    def available(self) -> bool:
        """Whether it can run here (e.g. the C++ extension was built)."""

    def norm_act_fwd(self, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                     running_mean: Optional[Tensor], running_var: Optional[Tensor], out: Tensor,
                     out_channel_offset: int, *, norm: str, training: bool, momentum: float,
                     eps: float, activation: str, slope: float, dropout_p: float, seed,
                     offset) -> tuple:
        """Write dropout(act(norm(x) * weight + bias)) into ``out[:, offset:offset + C]``.

        x: (N, C, H, W), any strides, in DTYPES. weight / bias: (C,) or both None.
        running_mean / running_var: (C,) or both None (batch norm only; updated in place in
        training with ``momentum`` and the unbiased variance, like nn.BatchNorm2d). out: x's
        dtype and device. norm in NORMS, activation in ACTIVATIONS (fastp2p.ops.definitions).
        Returns float32 (mean, rstd): (N, C) for instance norm, (C,) for batch norm (the
        running ones in eval), empty for norm="none".
        """

    def norm_act_bwd(self, grad_out_slice: Tensor, x: Tensor, weight: Optional[Tensor],
                     bias: Optional[Tensor], mean: Tensor, rstd: Tensor, *, norm: str,
                     activation: str, slope: float, dropout_p: float, seed, offset,
                     training: bool = True) -> tuple:
        """(grad_x, grad_weight, grad_bias) of norm_act_fwd from the (mean, rstd) it returned;
        the last two None without affine. ``training=False``: batch norm that normalized with
        the running statistics (constants, so grad_x does not flow through them)."""

    def gan_loss_fwd(self, logits: Tensor, *, mode: str, target_is_real: bool) -> tuple:
        """(loss: 0-dim float32, grad_logits like logits): the GANLoss mean against 1 (real) or
        0 (fake) — BCE-with-logits (vanilla), MSE (lsgan), or -/+ mean (wgangp) — and its
        gradient."""

    def l1_loss_fwd(self, x: Tensor, y: Tensor) -> tuple:
        """(loss = mean |x - y| as 0-dim float32, grad_x like x); grad_y = -grad_x."""

    def conv_transpose2d_fwd(self, x: Tensor, weight: Tensor, bias: Optional[Tensor], *,
                             stride: int, padding: int) -> Tensor:
        """``F.conv_transpose2d(x, weight, bias, stride, padding)`` for inference (no
        output padding, dilation or groups). A fast path only: where a backend lacks it,
        fastp2p.ops.conv_transpose runs the module itself (``provides`` says which)."""


# The launchers of the contract, in the order above: what the registry resolves and falls back.
LAUNCHERS = ("norm_act_fwd", "norm_act_bwd", "gan_loss_fwd", "l1_loss_fwd",
             "conv_transpose2d_fwd")
