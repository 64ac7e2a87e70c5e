"""The training step's losses and their gradients: one launch per network step, one to finish.

A network step's loss is two means over two tensors: the discriminator's 0.5 (L_fake + L_real)
over its fake- and real-pair logits, the generator's L_GAN + lambda L1 over its logits and
fake_B. Both ranges are one grid: each program writes its block of d total / d input (already
weighted by 0.5 or lambda: the gradient of a mean does not depend on the loss value, so the
backward has nothing to recompute) and one partial sum. A one-program finishing launch adds the
partial sums in a fixed order (deterministic, no atomics), writes [total, part_a, part_b] and,
given the engine's LossTally, adds the two parts to its device loss sums and records a
non-finite part, so no separate launches do the step's bookkeeping.
"""
import torch
import triton
import triton.language as tl

from fastp2p.kernels.codes import GAN_MODE_CODES
from fastp2p.kernels.losses import (gan_loss_and_grad, gan_target, l1_loss_and_grad,
                                    storage_order)
from fastp2p.kernels.pdl import launch_options, wait_for_previous_kernel

BLOCK = 1024
FINISH_BLOCK = 1024


@triton.jit
def _gan_block(X_ptr, Grad_ptr, block, numel, target, inv_numel, weight,
               MODE: tl.constexpr, BLOCK: tl.constexpr):
    """Gradient of weight * mean(loss(x, target)) for one block; returns the block's loss sum."""
    offs = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    x = tl.load(X_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    loss, grad = gan_loss_and_grad(x, target, inv_numel, MODE)
    # The weight is applied last, as autograd applies the outer 0.5 / lambda to the mean's
    # gradient in the unfused step.
    tl.store(Grad_ptr + offs, (grad * weight).to(Grad_ptr.dtype.element_ty), mask=ok)
    return tl.sum(tl.where(ok, loss, 0.0), axis=0)


@triton.jit
def _l1_block(X_ptr, Y_ptr, Grad_ptr, block, numel, inv_numel, weight, BLOCK: tl.constexpr):
    """Gradient of weight * mean |x - y| w.r.t. x for one block; returns the block's sum |x - y|."""
    offs = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    loss, grad = l1_loss_and_grad(X_ptr, Y_ptr, offs, ok, inv_numel)
    tl.store(Grad_ptr + offs, (grad * weight).to(Grad_ptr.dtype.element_ty), mask=ok)
    return tl.sum(loss, axis=0)


@triton.jit
def _step_losses_kernel(
    A_ptr, Grad_a_ptr,          # range A: GAN logits (D: fake pairs; G: fake pairs), dense
    B_ptr, Y_ptr, Grad_b_ptr,   # range B: D's real-pair logits (Y unused), or G's fake_B and
    #                             real_B (same strides) for the L1; Grad_b like B
    Partial_ptr,                # (a_blocks + b_blocks,) float32 partial loss sums
    a_numel, b_numel, a_blocks,
    a_target, b_target,         # GAN targets (b_target unused for the L1)
    inv_a_numel, inv_b_numel,
    a_weight, b_weight,         # the factor of each mean in the network's total loss
    MODE: tl.constexpr, B_IS_L1: tl.constexpr, BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    pid = tl.program_id(0)
    if pid < a_blocks:
        part = _gan_block(A_ptr, Grad_a_ptr, pid, a_numel, a_target, inv_a_numel, a_weight,
                          MODE, BLOCK)
    else:
        if B_IS_L1:
            part = _l1_block(B_ptr, Y_ptr, Grad_b_ptr, pid - a_blocks, b_numel, inv_b_numel,
                             b_weight, BLOCK)
        else:
            part = _gan_block(B_ptr, Grad_b_ptr, pid - a_blocks, b_numel, b_target,
                              inv_b_numel, b_weight, MODE, BLOCK)
    tl.store(Partial_ptr + pid, part)


@triton.jit
def _range_sum(Partial_ptr, start, count, FINISH_BLOCK: tl.constexpr):
    """Sum of Partial[start:start + count], always in the same order."""
    acc = tl.zeros([FINISH_BLOCK], dtype=tl.float32)
    for first in range(0, count, FINISH_BLOCK):
        offs = first + tl.arange(0, FINISH_BLOCK)
        acc += tl.load(Partial_ptr + start + offs, mask=offs < count, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def _finish_step_losses_kernel(
    Partial_ptr,                # (a_blocks + b_blocks,) float32, from _step_losses_kernel
    Losses_ptr,                 # (3,) float32 out: [total, part_a, part_b]
    Sums_ptr,                   # LossTally.loss_sums, (K,) float32, updated in place
    Step_ptr, First_ptr,        # LossTally's 0-dim int64 step and first non-finite step
    a_blocks, b_blocks,
    a_count, b_count,           # numel of each range, as floats (each mean divides by it)
    b_factor, total_factor,     # part_b = mean_b * b_factor; total = (a + b) * total_factor
    pos_a, pos_b,               # where part_a / part_b are added in loss_sums
    TALLY: tl.constexpr, ADVANCE_STEP: tl.constexpr, FINISH_BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    part_a = _range_sum(Partial_ptr, 0, a_blocks, FINISH_BLOCK) / a_count
    part_b = _range_sum(Partial_ptr, a_blocks, b_blocks, FINISH_BLOCK) / b_count * b_factor
    tl.store(Losses_ptr, (part_a + part_b) * total_factor)
    tl.store(Losses_ptr + 1, part_a)
    tl.store(Losses_ptr + 2, part_b)
    if TALLY:
        tl.store(Sums_ptr + pos_a, tl.load(Sums_ptr + pos_a) + part_a)
        tl.store(Sums_ptr + pos_b, tl.load(Sums_ptr + pos_b) + part_b)
        step = tl.load(Step_ptr) + 1  # the 1-based number of the step running now
        if ADVANCE_STEP:
            tl.store(Step_ptr, step)
        finite = (tl.abs(part_a) < float("inf")) & (tl.abs(part_b) < float("inf"))  # NaN: False
        first = tl.load(First_ptr)
        tl.store(First_ptr, tl.where(finite | (first != 0), first, step))


def _launch(a, grad_a, b, y, grad_b, *, mode, a_target, b_target, a_weight, b_weight,
            b_factor, total_factor, tally):
    """Both launches of a step-loss op; returns the (3,) float32 [total, part_a, part_b]."""
    a_numel, b_numel = a.numel(), b.numel()
    a_blocks, b_blocks = triton.cdiv(a_numel, BLOCK), triton.cdiv(b_numel, BLOCK)
    partial = torch.empty(a_blocks + b_blocks, device=a.device, dtype=torch.float32)
    losses = torch.empty(3, device=a.device, dtype=torch.float32)
    _step_losses_kernel[(a_blocks + b_blocks,)](
        a, grad_a, b, b if y is None else y, grad_b, partial,
        a_numel, b_numel, a_blocks, a_target, b_target, 1.0 / a_numel, 1.0 / b_numel,
        a_weight, b_weight, MODE=GAN_MODE_CODES[mode], B_IS_L1=y is not None, BLOCK=BLOCK,
        **launch_options(a))
    if tally is None:
        sums = step = first = losses  # not read without TALLY
        positions, advance = (0, 0), False
    else:
        sums, step, first = tally.loss_sums, tally.device_step, tally.first_nonfinite_step
        positions, advance = tally.positions, tally.advance_step
    _finish_step_losses_kernel[(1,)](
        partial, losses, sums, step, first, a_blocks, b_blocks, float(a_numel), float(b_numel),
        b_factor, total_factor, positions[0], positions[1], TALLY=tally is not None,
        ADVANCE_STEP=advance, FINISH_BLOCK=FINISH_BLOCK, **launch_options(a))
    return losses


def d_step_losses_fwd(logits_fake, logits_real, *, mode, tally=None):
    """(losses, grad_fake, grad_real): losses = [0.5 (L_fake + L_real), L_fake, L_real] as a
    float32 (3,) tensor, the GAN losses of D's logits on the fake pairs (target fake) and on the
    real pairs (target real); the gradients of the total, like their logits."""
    fake, real = storage_order(logits_fake), storage_order(logits_real)
    grad_fake, grad_real = torch.empty_like(fake), torch.empty_like(real)
    losses = _launch(fake, grad_fake, real, None, grad_real, mode=mode,
                     a_target=gan_target(mode, False), b_target=gan_target(mode, True),
                     a_weight=0.5, b_weight=0.5, b_factor=1.0, total_factor=0.5, tally=tally)
    return losses, grad_fake, grad_real


def g_step_losses_fwd(logits, fake_b, real_b, *, mode, lambda_l1, tally=None):
    """(losses, grad_logits, grad_fake_b): losses = [L_GAN + lambda L1, L_GAN, lambda L1] as a
    float32 (3,) tensor, L_GAN of D's logits on the fake pairs against the real target and
    L1 = mean |fake_b - real_b| (computed in float32 whatever their dtypes); the gradients of
    the total, like logits and fake_b (d total / d real_b = -grad_fake_b)."""
    logits, fake_b = storage_order(logits), storage_order(fake_b)
    if real_b.stride() != fake_b.stride():
        real_b = torch.empty_strided(fake_b.shape, fake_b.stride(), dtype=real_b.dtype,
                                     device=real_b.device).copy_(real_b)
    grad_logits, grad_fake_b = torch.empty_like(logits), torch.empty_like(fake_b)
    losses = _launch(logits, grad_logits, fake_b, real_b, grad_fake_b, mode=mode,
                     a_target=gan_target(mode, True), b_target=0.0, a_weight=1.0,
                     b_weight=float(lambda_l1), b_factor=float(lambda_l1), total_factor=1.0,
                     tally=tally)
    return losses, grad_logits, grad_fake_b
