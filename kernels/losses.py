"""PatchGAN loss and L1 loss: the mean and its gradient in one pass over the elements.

The gradient of a mean loss is elementwise (it does not depend on the loss value), so each
program writes its block of d loss / d input and a partial sum; the partial sums are added in a
fixed order afterwards (deterministic, no atomics). Dense tensors are walked in storage order,
so channels-last or permuted inputs need no copy and the gradient keeps the input's strides.
"""
import torch
import triton
import triton.language as tl

from fastp2p.kernels.codes import GAN_MODE_CODES
from fastp2p.kernels.pdl import launch_options, wait_for_previous_kernel

BLOCK = 1024


@triton.jit
def gan_loss_and_grad(x, target, inv_numel, MODE: tl.constexpr):
    """Per-element loss and d mean(loss) / d x of the GAN mode MODE (GAN_MODE_CODES), float32."""
    if MODE == 0:
        # BCE with logits, the stable form torch computes: (1 - t) x + max(-x, 0)
        # + log(1 + exp(-|x|)) (= max(x, 0) - x t + ..., but infinite logits give torch's inf
        # or nan: x t is nan at x = inf, t = 0, where torch's loss is inf)
        loss = (1.0 - target) * x + tl.maximum(-x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))
        grad = (1.0 / (1.0 + tl.exp(-x)) - target) * inv_numel
    elif MODE == 1:
        loss = (x - target) * (x - target)
        grad = (x - target) * (2.0 * inv_numel)  # as torch: 2 (x - t) alone overflows near max
    else:
        # target is -1 (real: -mean) or +1 (fake: +mean)
        loss = x * target
        grad = tl.zeros_like(x) + target * inv_numel
    return loss, grad


@triton.jit
def l1_loss_and_grad(X_ptr, Y_ptr, offs, ok, inv_numel):
    """Per-element |x - y| (0 where masked off) and d mean|x - y| / d x at ``offs``, float32."""
    diff = (tl.load(X_ptr + offs, mask=ok, other=0.0).to(tl.float32)
            - tl.load(Y_ptr + offs, mask=ok, other=0.0).to(tl.float32))
    sign = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
    return tl.abs(diff), sign * inv_numel


def gan_target(mode: str, target_is_real: bool) -> float:
    """The target a GAN mode's per-element loss compares with: 1 / 0 (vanilla, lsgan); wgangp's
    sign, -1 for real (-mean) and +1 for fake (+mean)."""
    if mode == "wgangp":
        return -1.0 if target_is_real else 1.0
    return 1.0 if target_is_real else 0.0


@triton.jit
def _gan_loss_fwd_kernel(
    X_ptr,             # logits, dense, walked in storage order
    Grad_ptr,          # d loss / d logits, same strides as X
    Partial_ptr,       # (num_blocks,) float32 partial sums of the per-element loss
    numel, target, inv_numel,
    MODE: tl.constexpr, BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    x = tl.load(X_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    loss, grad = gan_loss_and_grad(x, target, inv_numel, MODE)
    tl.store(Grad_ptr + offs, grad.to(Grad_ptr.dtype.element_ty), mask=ok)
    tl.store(Partial_ptr + tl.program_id(0), tl.sum(tl.where(ok, loss, 0.0), axis=0))


@triton.jit
def _l1_loss_fwd_kernel(
    X_ptr, Y_ptr,      # same shape and strides, dense
    Grad_ptr,          # d loss / d x, same strides
    Partial_ptr,       # (num_blocks,) float32 partial sums of |x - y|
    numel, inv_numel,
    BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    loss, grad = l1_loss_and_grad(X_ptr, Y_ptr, offs, ok, inv_numel)
    tl.store(Grad_ptr + offs, grad.to(Grad_ptr.dtype.element_ty), mask=ok)
    tl.store(Partial_ptr + tl.program_id(0), tl.sum(loss, axis=0))


def _dense(t: torch.Tensor) -> bool:
    """True when t's elements fill one storage range without gaps (any dimension order)."""
    sizes_strides = sorted((s, n) for n, s in zip(t.shape, t.stride()) if n != 1)
    expected = 1
    for stride, size in sizes_strides:
        if stride != expected:
            return False
        expected *= size
    return True


def storage_order(t: torch.Tensor) -> torch.Tensor:
    """t itself if dense, else a contiguous copy (the only case that copies)."""
    return t if _dense(t) else t.contiguous()


def _grad_and_partials(x: torch.Tensor):
    """(grad like x, one float32 partial sum per block, number of blocks)."""
    blocks = triton.cdiv(x.numel(), BLOCK)
    return (torch.empty_like(x), torch.empty(blocks, device=x.device, dtype=torch.float32),
            blocks)


def gan_loss_fwd(logits, *, mode, target_is_real):
    """(loss: 0-dim float32, grad_logits): BCE-with-logits / MSE mean vs 1 or 0, or WGAN mean."""
    x = storage_order(logits)
    numel = x.numel()
    target = gan_target(mode, target_is_real)
    grad, partial, blocks = _grad_and_partials(x)
    _gan_loss_fwd_kernel[(blocks,)](x, grad, partial, numel, target, 1.0 / numel,
                                    MODE=GAN_MODE_CODES[mode], BLOCK=BLOCK,
                                    **launch_options(x))
    return partial.sum() / numel, grad


def l1_loss_fwd(x, y):
    """(loss = mean |x - y| as 0-dim float32, grad_x); grad_y = -grad_x."""
    x = storage_order(x)
    if y.stride() != x.stride():
        y = torch.empty_like(x).copy_(y)
    numel = x.numel()
    grad, partial, blocks = _grad_and_partials(x)
    _l1_loss_fwd_kernel[(blocks,)](x, y, grad, partial, numel, 1.0 / numel, BLOCK=BLOCK,
                                   **launch_options(x))
    return partial.sum() / numel, grad
