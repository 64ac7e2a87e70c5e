"""Input pipeline in one pass: a uint8 batch of stored A|B pairs -> the model's A and B.

Fused: per-sample random crop (offsets from small int32 tensors), horizontal flip, the split into
the A and B halves (swapped for BtoA by choosing which half feeds A), the reference's
``(v / 255 - 0.5) / 0.5`` scaling and the cast to fp32/bf16/fp16, written NHWC. Each program reads
one source row segment of the pair once and writes the matching row of A and of B. The division
by 255 is correctly rounded (``div_rn``) so fp32 outputs match the CPU path bit for bit.
"""
import torch
import triton
import triton.language as tl

from fastp2p.kernels.bf16_rounding import _round_to_bfloat16

MAX_BLOCK_W = 128


@triton.jit
def _convert_half(src, Out_ptr, n, r, cols, chans, s_n, s_c, s_h, s_w, mask,
                  OUT_BF16: tl.constexpr):
    """One half's row segment: uint8 -> the reference's ``(v / 255 - 0.5) / 0.5`` -> Out."""
    v = tl.load(src, mask=mask, other=0).to(tl.float32)
    # As torch computes it on the CPU; dividing by 0.5 is exact, so * 2
    v = (tl.math.div_rn(v, 255.0) - 0.5) * 2.0
    if OUT_BF16:  # rounded in bits: the interpreter's cast truncates (bf16_rounding)
        v = _round_to_bfloat16(v)
    dst = Out_ptr + n * s_n + r * s_h + cols[:, None] * s_w + chans[None, :] * s_c
    tl.store(dst, v.to(Out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _augment_kernel(
    Pairs_ptr,          # uint8 (N, H, 2W, C): stored A|B pairs, any strides
    CropX_ptr,          # int32 (N,): first column of the crop inside a half
    CropY_ptr,          # int32 (N,): first row of the crop
    Flip_ptr,           # int32 (N,): 1 = mirror the crop left-right
    A_ptr, B_ptr,       # (N, C, crop_h, crop_w) outputs, any strides (NHWC memory is native)
    crop_h, crop_w,     # output height and width
    a_col, b_col,       # first stored column of the half that becomes A / B (0 or W)
    s_pn, s_ph, s_pw, s_pc,      # strides of Pairs (elements)
    s_an, s_ac, s_ah, s_aw,      # strides of A
    s_bn, s_bc, s_bh, s_bw,      # strides of B
    C: tl.constexpr,             # channels (<= BLOCK_C)
    BLOCK_W: tl.constexpr,       # output columns per program
    BLOCK_C: tl.constexpr,       # C rounded up to a power of two
    OUT_BF16: tl.constexpr,      # outputs are bf16: round explicitly (_round_to_bfloat16)
):
    row = tl.program_id(0).to(tl.int64)          # n * crop_h + r
    n = row // crop_h
    r = row % crop_h
    cols = tl.program_id(1).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    chans = tl.arange(0, BLOCK_C).to(tl.int64)
    x0 = tl.load(CropX_ptr + n).to(tl.int64)
    y0 = tl.load(CropY_ptr + n).to(tl.int64)
    flip = tl.load(Flip_ptr + n)
    src_cols = x0 + tl.where(flip != 0, crop_w - 1 - cols, cols)
    mask = (cols < crop_w)[:, None] & (chans < C)[None, :]
    src = (Pairs_ptr + n * s_pn + (y0 + r) * s_ph
           + src_cols[:, None] * s_pw + chans[None, :] * s_pc)
    _convert_half(src + a_col * s_pw, A_ptr, n, r, cols, chans, s_an, s_ac, s_ah, s_aw, mask,
                  OUT_BF16)
    _convert_half(src + b_col * s_pw, B_ptr, n, r, cols, chans, s_bn, s_bc, s_bh, s_bw, mask,
                  OUT_BF16)


def augment_pairs(pairs, crop_x, crop_y, flip, *, crop_size, swap=False, dtype=torch.float32,
                  out_a=None, out_b=None):
    """(A, B), each (N, C, crop_size, crop_size) in [-1, 1], from uint8 ``pairs`` (N, H, 2W, C).

    ``crop_x``, ``crop_y``, ``flip``: int32 (N,) per-sample crop corner (inside a half) and flip
    flag, on the pairs' device. ``swap`` (BtoA) feeds the right half to A. Outputs are
    allocated channels-last (NHWC memory) unless ``out_a`` / ``out_b`` are given (any strides,
    dtype ``dtype``). The host launcher: the op (fastp2p.ops.augment) checked the arguments.
    """
    count, _, double_width, channels = pairs.shape
    width = double_width // 2
    shape = (count, channels, crop_size, crop_size)
    out_a, out_b = (torch.empty(shape, dtype=dtype, device=pairs.device,
                                memory_format=torch.channels_last) if out is None else out
                    for out in (out_a, out_b))
    if count == 0:
        return out_a, out_b
    block_w = min(MAX_BLOCK_W, triton.next_power_of_2(crop_size))
    grid = (count * crop_size, triton.cdiv(crop_size, block_w))
    a_col, b_col = (width, 0) if swap else (0, width)
    _augment_kernel[grid](
        pairs, crop_x, crop_y, flip, out_a, out_b, crop_size, crop_size, a_col, b_col,
        *pairs.stride(), *out_a.stride(), *out_b.stride(),
        C=channels, BLOCK_W=block_w, BLOCK_C=triton.next_power_of_2(channels),
        OUT_BF16=dtype == torch.bfloat16)
    return out_a, out_b
