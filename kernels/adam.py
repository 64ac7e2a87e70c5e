"""Adam over one flat float32 master buffer per network, writing the model's copy in the same pass.

One launch updates every parameter of a network: the masters, both moments and the gradients
are flat buffers (fastp2p.train.master_weights_adam lays them out), so there is no pointer table
and no per-tensor launch. The buffer has two regions: ``master[:num_copied]`` are the parameters
the model computes with in a lower precision (a bf16 copy, with bf16 gradients), the rest are
parameters the model uses in float32 directly (the masters are the model's tensors there, with
float32 gradients).

Capturable: the lr is read from a device tensor and the step number from a device counter, so a
CUDA graph that replays the launch advances the step and sees lr changes. The step counter is a
ticket: every program adds 1 to it, and since launches on one stream do not overlap, a program
that draws ticket ``k`` is in launch ``k // num_programs`` - no second launch to increment the
step and no race between programs reading and writing it. The bias corrections are computed in
float64 (by multiplications only), as torch.optim.Adam computes them in Python floats.

The update is torch.optim.Adam's (L2 weight decay added to the gradient, not AdamW), in its
order of float32 operations:
    g = grad + weight_decay * p
    m = lerp(m, g, 1 - beta1)
    v = v * beta2 + (1 - beta2) * g * g
    p = p + (-lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""
import torch
import triton
import triton.language as tl

from fastp2p.kernels.bf16_rounding import _round_to_bfloat16
from fastp2p.kernels.grid import sm_count
from fastp2p.kernels.pdl import launch_options, wait_for_previous_kernel

# Elements per block: on a GPU, a size that keeps loads wide; CPU tensors run through the Triton
# interpreter, whose cost is per operation, not per element, so they take much larger blocks.
GPU_BLOCK, INTERPRETER_BLOCK = 1024, 32768
PROGRAMS_PER_SM = 4  # persistent grid: each program loops over blocks


@triton.jit
def _lerp(start, end, weight):
    """torch.lerp's two formulas (exact at weight 0 and at weight 1)."""
    if weight < 0.5:
        out = start + weight * (end - start)
    else:
        out = end - (end - start) * (1.0 - weight)
    return out


@triton.jit
def _power(base, exponent):
    """base ** exponent (float64, exponent an integer >= 0) by repeated squaring: multiplies
    only, within a few ulps of Python's ``beta ** step``."""
    result = base * 0.0 + 1.0
    while exponent > 0:
        if exponent % 2 == 1:
            result = result * base
        base = base * base
        exponent = exponent // 2
    return result


@triton.jit
def _adam_kernel(
    Master_ptr, ExpAvg_ptr, ExpAvgSq_ptr,  # (numel,) float32, updated in place
    GradCopied_ptr,    # (num_copied,) gradients of the copied parameters (the copy's dtype)
    GradOwn_ptr,       # (numel - num_copied,) float32 gradients of the other parameters
    Copy_ptr,          # (num_copied,) the model's copy of master[:num_copied], written
    Lr_ptr,            # () float32
    Ticket_ptr,        # (1,) int64: num_programs * launches so far
    Hyper_ptr,         # (4,) float64: beta1, beta2, eps, weight_decay (ops/adam.py HYPER_FIELDS)
    numel, num_copied, num_blocks,
    COPY_BF16: tl.constexpr, BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    ticket = tl.atomic_add(Ticket_ptr, 1)
    step = ticket // tl.num_programs(0) + 1
    beta1 = tl.load(Hyper_ptr)
    beta2 = tl.load(Hyper_ptr + 1)
    bias_correction1 = 1.0 - _power(beta1, step)
    bias_correction2 = 1.0 - _power(beta2, step)
    # lr * -1.0, not -lr: Triton 3.6 compiles a float's unary minus as 0 - x, so lr 0 gave a
    # step size of +0.0 instead of torch's -0.0 (and a -0.0 master turned +0.0); Triton 3.9
    # negates. The product is the exact negation in both.
    neg_step_size = (tl.load(Lr_ptr).to(tl.float64) * -1.0 / bias_correction1).to(tl.float32)
    bias_correction2_sqrt = tl.sqrt_rn(bias_correction2.to(tl.float32))
    weight1 = (1.0 - beta1).to(tl.float32)
    weight2 = (1.0 - beta2).to(tl.float32)
    beta2 = beta2.to(tl.float32)
    eps = tl.load(Hyper_ptr + 2).to(tl.float32)
    weight_decay = tl.load(Hyper_ptr + 3).to(tl.float32)
    for block in range(tl.program_id(0), num_blocks, tl.num_programs(0)):
        offs = tl.cast(block, tl.int64) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < numel
        copied = offs < num_copied
        grad = tl.where(
            copied,
            tl.load(GradCopied_ptr + offs, mask=ok & copied, other=0.0).to(tl.float32),
            tl.load(GradOwn_ptr + (offs - num_copied), mask=ok & (offs >= num_copied),
                    other=0.0))
        p = tl.load(Master_ptr + offs, mask=ok, other=0.0)
        m = tl.load(ExpAvg_ptr + offs, mask=ok, other=0.0)
        v = tl.load(ExpAvgSq_ptr + offs, mask=ok, other=0.0)
        if weight_decay != 0.0:
            grad = grad + weight_decay * p
        m = _lerp(m, grad, weight1)
        v = v * beta2 + weight2 * grad * grad
        # IEEE square root and divisions (tl.sqrt and / are the fast approximate ones on a
        # GPU), as torch computes them; the kernel is bound by memory, not by these.
        denom = tl.div_rn(tl.sqrt_rn(v), bias_correction2_sqrt) + eps
        p = p + tl.div_rn(neg_step_size * m, denom)
        tl.store(Master_ptr + offs, p, mask=ok)
        tl.store(ExpAvg_ptr + offs, m, mask=ok)
        tl.store(ExpAvgSq_ptr + offs, v, mask=ok)
        if COPY_BF16:
            copy = _round_to_bfloat16(p)
        else:
            copy = p
        tl.store(Copy_ptr + offs, copy, mask=ok & copied)


def _block(device: torch.device) -> int:
    return GPU_BLOCK if device.type == "cuda" else INTERPRETER_BLOCK


def adam_programs(numel: int, device: torch.device) -> int:
    """The grid for ``numel`` elements: a few programs per SM on a GPU, at most one per block."""
    blocks = triton.cdiv(numel, _block(device))
    if device.type == "cuda":
        return max(1, min(blocks, PROGRAMS_PER_SM * sm_count(device)))
    return max(1, min(blocks, 2))


def adam_step(master, exp_avg, exp_avg_sq, grad_copied, grad_own, copy, lr, ticket, hyper,
              num_programs: int) -> None:
    """One Adam step over the flat buffers (see the module docstring), in one launch.

    ``num_programs`` (``adam_programs``) must stay the same for the life of ``ticket``, which
    it divides into steps. The host launcher: the op (fastp2p.ops.adam) checked the buffers.
    """
    numel, num_copied = master.numel(), copy.numel()
    block = _block(master.device)
    _adam_kernel[(num_programs,)](
        master, exp_avg, exp_avg_sq, grad_copied, grad_own, copy, lr, ticket, hyper,
        numel, num_copied, triton.cdiv(numel, block),
        COPY_BF16=copy.dtype == torch.bfloat16, BLOCK=block, **launch_options(master))
