"""The written contract of a backend: the launcher signatures every backend module follows.

A backend is a module (``fastp2p.ops.backends.triton``, ``.cpp``, ``.reference``) that matches
``Backend`` below: ``NAME``, ``DTYPES``, ``available()`` and the launchers of the ops it
implements. Launchers take torch tensors, allocate what they return, and have no autograd;
the ops layer (``fastp2p/ops/<op>.py``) has already checked every argument (shapes, dtypes,
devices, names) before a launcher runs, so launchers do not check again. Seeds and offsets are
ints, or 0-dim int64 tensors on x's device (read when the kernel runs: what a CUDA graph replays).

A backend may leave out any launcher: the registry (``fastp2p.ops.backends``) then runs the
reference backend's for that op, with a one-time warning — except the fast paths of
``FAST_PATH_ONLY``, which the reference does not have (asking for one raises AttributeError
"... none to fall back to"; their callers check ``provides`` first).
tests/backends/test_backend_contract.py checks that every launcher a backend defines has
exactly the signature written here.
"""
from typing import Optional, Protocol

import torch

from fastp2p.kernels.conv_fused_types import IDENTITY, GradFold, InputTransform, TilePartials
from fastp2p.kernels.loss_tally import LossTally

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
                     offset, num_batches_tracked: Optional[Tensor] = None) -> tuple:
        """Write dropout(act(norm(x) * weight + bias)) into ``out[:, offset:offset + C]``.

        x: (N, C, H, W), any strides, in DTYPES. weight / bias: (C,) or both None.
        running_mean / running_var: (C,) or both None (batch norm only; updated in place in
        training with ``momentum`` and the unbiased variance, like nn.BatchNorm2d; then
        ``num_batches_tracked``, a one-element int64 tensor on x's device when given, gets 1
        added, by the kernel that updates them where the backend can: Triton; the others call
        ``fastp2p.ops.definitions.count_batch``; untouched in every other case). out: x's
        dtype and device. norm in NORMS, activation in ACTIVATIONS (fastp2p.ops.definitions).
        Returns float32 (mean, rstd) (float64 for float64 x, which only the reference backend
        takes): (N, C) for instance norm, (C,) for batch norm (the running ones in eval), empty
        for norm="none".
        """

    def norm_act_fwd_plan(self, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                          running_mean: Optional[Tensor], running_var: Optional[Tensor],
                          out: Tensor, out_channel_offset: int, *, norm: str, training: bool,
                          momentum: float, eps: float, activation: str, slope: float,
                          dropout_p: float, statistics: bool):
        """A fast path only: ``norm_act_fwd`` prepared once for repeated calls, or None where
        the backend has no cheaper way for these tensors (the caller then calls
        ``norm_act_fwd``). The plan, ``plan(x, weight, bias, running_mean, running_var, out,
        seed, offset)``, does what ``norm_act_fwd(..., out_channel_offset, ...)`` with these
        settings does, for tensors like the ones given here (same shapes, strides, dtypes,
        device; the same optional ones None), and returns its (mean, rstd) — or None, without
        computing them where it can, when ``statistics`` is False (the caller discards them).
        A plan counts no batch: its caller adds to num_batches_tracked itself (count_batch)."""

    def norm_act_bwd(self, grad_out_slice: Tensor, x: Tensor, weight: Optional[Tensor],
                     bias: Optional[Tensor], mean: Tensor, rstd: Tensor, *, norm: str,
                     activation: str, slope: float, dropout_p: float, seed, offset,
                     training: bool = True) -> tuple:
        """(grad_x, grad_weight, grad_bias) of norm_act_fwd from the (mean, rstd) it returned;
        the last two None without affine. ``training=False``: batch norm that normalized with
        the running statistics (constants, so grad_x does not flow through them)."""

    def gan_loss_fwd(self, logits: Tensor, *, mode: str, target_is_real: bool) -> tuple:
        """(loss, grad_logits like logits): the GANLoss mean against 1 (real) or 0 (fake) —
        BCE-with-logits (vanilla), MSE (lsgan), or -/+ mean (wgangp) — and its gradient. loss:
        0-dim float32, or float64 for float64 logits (which only the reference backend takes)."""

    def l1_loss_fwd(self, x: Tensor, y: Tensor) -> tuple:
        """(loss = mean |x - y| as 0-dim float32 (float64 for float64 x), grad_x like x);
        grad_y = -grad_x."""

    # The training step's losses, one fused launch per network step (fastp2p.ops.step_losses).
    # ``tally``: the engine's device counters, which the op updates in place (see LossTally).

    def d_step_losses_fwd(self, logits_fake: Tensor, logits_real: Tensor, *, mode: str,
                          tally: Optional[LossTally] = None) -> tuple:
        """(losses, grad_fake, grad_real): losses = float32 (3,) [0.5 (L_fake + L_real),
        L_fake, L_real], the GANLoss of D's logits on the fake pairs (target fake) and on the
        real pairs (target real); grad_* = d losses[0] / d logits_*, like the logits. With a
        tally: loss_sums[positions] += (L_fake, L_real), and first_nonfinite_step = the step
        running now (device_step + 1) if either is NaN / Inf and none was before."""

    def g_step_losses_fwd(self, logits: Tensor, fake_b: Tensor, real_b: Tensor, *, mode: str,
                          lambda_l1: float, tally: Optional[LossTally] = None) -> tuple:
        """(losses, grad_logits, grad_fake_b): losses = float32 (3,) [L_GAN + lambda L1, L_GAN,
        lambda L1], L_GAN of D's logits on the fake pairs against the real target, L1 = mean
        |fake_b - real_b| in float32 (float64 for float64 inputs) whatever the two dtypes;
        grad_* = d losses[0] / d input, like the input (d losses[0] / d real_b = -grad_fake_b).
        With a tally: as d_step_losses_fwd, and ``advance_step`` adds 1 to device_step."""

    def conv_transpose2d_fwd(self, x: Tensor, weight: Tensor, bias: Optional[Tensor], *,
                             stride: int, padding: int) -> Tensor:
        """``F.conv_transpose2d(x, weight, bias, stride, padding)`` for inference (no
        output padding, dilation or groups). A fast path only: where a backend lacks it,
        fastp2p.ops.conv_transpose runs the module itself (``provides`` says which)."""

    # The fused convolution (issue 16; autograd in fastp2p.ops.conv_norm_act). Only Triton
    # has it and the reference backend has no fallback: fastp2p.ops.backends.conv_fused_backend
    # finds the backend that provides it, and fastp2p.ops.backends.conv_choice says when to use
    # it. Sources and weight share one dtype of the backend's DTYPES; NHWC preferred.

    def conv_fused_fwd(self, sources: tuple, transforms: tuple, weight: Tensor,
                       bias: Optional[Tensor] = None, *, stride: int, padding: int,
                       transposed: bool = False, slope: float = 0.2, partials: bool = True,
                       output_activation: str = "none", out: Optional[Tensor] = None) -> tuple:
        """(y, TilePartials or None): y = conv(cat([prologue_i(sources[i])])) + bias, then
        tanh'd where ``output_activation`` is "tanh" (only with partials=False).

        sources: one or two (N, C_i, H, W) tensors; transforms: an InputTransform per source
        (dropout(act(x * scale + shift)), zero padding after it). weight: (C_out, sum C_i, KH,
        KW), or (sum C_i, C_out, KH, KW) ``transposed``. partials: y's per-tile (mean, M2,
        rows), float32 (N, T, C_out), for conv_stats_finish. y channels-last unless ``out``."""

    def conv_fused_dgrad(self, grad_y: Tensor, weight: Tensor, x: Tensor,
                         transform: InputTransform, *, channel_offset: int = 0, stride: int,
                         padding: int, transposed: bool = False, slope: float = 0.2,
                         fold: Optional[GradFold] = None, out: Optional[Tensor] = None) -> tuple:
        """(grad_x, grad_scale, grad_shift) through source x of conv_fused_fwd, whose channels
        start at ``channel_offset`` of the weight's input channels; the last two float32 like
        transform.scale, or None without scale. ``fold``: grad_y + alpha * y + beta (the
        output statistics' share of the gradient), or grad_y * (1 - y^2) (an output tanh's
        derivative), completed as grad_y loads."""

    def conv_fused_wgrad(self, grad_y: Tensor, x: Tensor, transform: InputTransform = IDENTITY,
                         *, kernel_size: tuple, stride: int, padding: int,
                         transposed: bool = False, slope: float = 0.2,
                         fold: Optional[GradFold] = None) -> Tensor:
        """float32 d loss / d weight for source x's channels: (C_out, C, KH, KW), or (C, C_out,
        KH, KW) ``transposed``; the prologue is recomputed from x."""

    def conv_fused_bias_grad(self, grad_y: Tensor, fold: Optional[GradFold] = None) -> Tensor:
        """float32 (C_out,) d loss / d bias: grad_y summed over images and pixels, completed
        by ``fold`` as it loads (as conv_fused_dgrad's)."""

    def conv_stats_finish(self, parts: TilePartials, *, per_sample: bool, eps: float,
                          gamma: Optional[Tensor] = None, beta: Optional[Tensor] = None,
                          running_mean: Optional[Tensor] = None,
                          running_var: Optional[Tensor] = None, momentum: float = 0.1) -> tuple:
        """float32 (mean, rstd, scale, shift) of a conv output from its TilePartials: (N, C)
        ``per_sample`` (instance norm), else (C,); scale = gamma * rstd, shift = beta - mean *
        scale (gamma 1, beta 0 when None). running_mean / running_var, when given, are updated
        in place like nn.BatchNorm2d's (unbiased variance)."""

    # The optimizer step and the input pipeline (fastp2p.ops.adam, fastp2p.ops.augment): only
    # Triton has kernels for them; the reference's plain PyTorch is their ordinary path
    # elsewhere (REFERENCE_ELSEWHERE).

    def adam_programs(self, numel: int, device: torch.device) -> int:
        """The ``num_programs`` of ``adam_step`` over ``numel`` elements on ``device``: fixed
        for the life of a step counter (``ticket``), which it divides into steps."""

    def adam_step(self, master: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                  grad_copied: Tensor, grad_own: Tensor, copy: Tensor, lr: Tensor,
                  ticket: Tensor, hyper: Tensor, num_programs: int) -> None:
        """One torch.optim.Adam step (L2 weight decay, bias correction) over flat float32
        buffers, in place, and ``copy = master[:copy.numel()]`` in copy's dtype (bf16 rounded
        to nearest even, or float32). master / exp_avg / exp_avg_sq: (numel,); grad_copied:
        (num_copied,) in copy's dtype, grad_own: (numel - num_copied,) float32; lr: a float32
        one-element tensor; hyper: float64 (4,) (beta1, beta2, eps, weight_decay); ticket:
        int64 (1,), num_programs * steps so far, advanced by num_programs. Reads the lr and
        the step on the device (no sync: a CUDA graph replays it)."""

    def augment_pairs(self, pairs: Tensor, crop_x: Tensor, crop_y: Tensor, flip: Tensor, *,
                      crop_size: int, swap: bool = False, dtype: torch.dtype = torch.float32,
                      out_a: Optional[Tensor] = None, out_b: Optional[Tensor] = None) -> tuple:
        """(A, B), each (N, C, crop_size, crop_size) ``dtype`` in [-1, 1], from uint8 ``pairs``
        (N, H, 2W, C): the crop at (crop_x, crop_y) of each half, mirrored where ``flip``, the
        right half feeding A when ``swap``, scaled as ``(v / 255 - 0.5) / 0.5``. crop_x /
        crop_y / flip: int32 (N,) on pairs' device. Written into out_a / out_b when given,
        else into new channels-last tensors."""


# The launchers of the contract, in the order above: what the registry resolves and falls back.
LAUNCHERS = ("norm_act_fwd", "norm_act_fwd_plan", "norm_act_bwd", "gan_loss_fwd",
             "l1_loss_fwd", "d_step_losses_fwd", "g_step_losses_fwd", "conv_transpose2d_fwd",
             "conv_fused_fwd", "conv_fused_dgrad", "conv_fused_wgrad", "conv_fused_bias_grad",
             "conv_stats_finish", "adam_programs", "adam_step", "augment_pairs")
# Ops whose reference launcher is the ordinary path wherever a backend has no kernel for them
# (the C++ extension has none): running it is no fallback, so it is not warned of.
REFERENCE_ELSEWHERE = ("adam_programs", "adam_step", "augment_pairs")
# The fast paths only: the reference backend has none of these (no fallback; the ops that use
# them ask ``provides`` first and otherwise run something else).
CONV_FUSED = ("conv_fused_fwd", "conv_fused_dgrad", "conv_fused_wgrad", "conv_fused_bias_grad",
              "conv_stats_finish")
FAST_PATH_ONLY = ("norm_act_fwd_plan", "conv_transpose2d_fwd") + CONV_FUSED
