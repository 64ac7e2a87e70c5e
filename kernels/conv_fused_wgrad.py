"""Weight and bias gradients of the fused convolution (kernels/conv_fused.py). wgrad: a GEMM over
pixels whose prologue recomputes the activated input dropout(act(x * scale + shift)) from the
stored pre-norm x (nothing activated is kept for the backward). One program per (tap,
input-channel block, output-channel block, pixel split); splits write float32 partials summed on
the host. Both load the output gradient completed by the layer's GradFold, if any.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from fastp2p.kernels.conv_fused import (IDENTITY, GradFold, InputTransform, _affine_code,
                                        _check_storage, _check_transform, _dropout_args,
                                        _transform_args, fold_code, gemm_blocks,
                                        gemm_launch_options)
from fastp2p.kernels.conv_fused_tiles import (AFFINE_PER_SAMPLE, _load_activated,
                                              _load_folded_grad)
from fastp2p.kernels.grid import reduction_splits
from fastp2p.kernels.norm_act import dense_vector
from fastp2p.kernels.norm_act_tiles import _rng_start


@triton.jit(do_not_specialize=["Seed", "Offset"])
def _conv_wgrad_kernel(
    X_ptr, Scale_ptr, Shift_ptr, Seed, Offset,  # forward input (N, C, H, W), pre-prologue
    G_ptr,                                      # gradient of the output (N, CO, OH, OW)
    FoldY_ptr, Alpha_ptr, Beta_ptr,             # FOLD: y (N, CO, OH, OW), (N, CO) | (CO,)
    DW_ptr,                                     # (splits, C, CO, KH, KW) float32 partials
    C, H, W, CO, OH, OW, rows, rows_per_split, num_splits,
    sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, syn, syc, syh, syw,
    slope, threshold, keep_scale,
    STRIDE: tl.constexpr, PADDING: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    TRANSPOSED: tl.constexpr, AFFINE: tl.constexpr, ACTIVATION: tl.constexpr,
    DROPOUT: tl.constexpr, FOLD: tl.constexpr, AFFINE_FOLD: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """dW[ci, co, kh, kw] = sum over pixels of a[.., ci] * g[.., co], where a pixel pairs input
    (ih, iw) with output (oh, ow) = (ih, iw) * STRIDE - PADDING + (kh, kw) for a transposed
    convolution, (ih, iw) = (oh, ow) * STRIDE - PADDING + (kh, kw) for a direct one. The rows
    walked are the side without the stride (output pixels, resp. input pixels); the other
    side is gathered, out-of-range positions contributing 0. FOLD: a GradFold code."""
    pid = tl.program_id(0).to(tl.int64)
    tap = pid // num_splits
    split = pid % num_splits
    kh = tap // KW
    kw = tap % KW
    ci = tl.program_id(1).to(tl.int64) * BLOCK_CI + tl.arange(0, BLOCK_CI).to(tl.int64)
    co = tl.program_id(2).to(tl.int64) * BLOCK_CO + tl.arange(0, BLOCK_CO).to(tl.int64)
    ci_ok = ci < C
    co_ok = co < CO
    seed_mixed, offset = _rng_start(Seed, Offset, DROPOUT)
    row_begin = split * rows_per_split
    row_end = tl.minimum(row_begin + rows_per_split, rows)
    acc = tl.zeros((BLOCK_CI, BLOCK_CO), tl.float32)
    for start in range(0, rows_per_split, BLOCK_P):
        p = row_begin + start + tl.arange(0, BLOCK_P).to(tl.int64)
        p_ok = p < row_end
        if TRANSPOSED:
            n = p // (H * W)
            ih = (p % (H * W)) // W
            iw = p % W
            oh = ih * STRIDE - PADDING + kh
            ow = iw * STRIDE - PADDING + kw
        else:
            n = p // (OH * OW)
            oh = (p % (OH * OW)) // OW
            ow = p % OW
            ih = oh * STRIDE - PADDING + kh
            iw = ow * STRIDE - PADDING + kw
        a = _load_activated(X_ptr, Scale_ptr, Shift_ptr, n, ih, iw, ci, p_ok, ci_ok, C, H, W,
                            sxn, sxc, sxh, sxw, slope, seed_mixed, offset, threshold, keep_scale,
                            AFFINE, ACTIVATION, DROPOUT)
        g = _load_folded_grad(G_ptr, FoldY_ptr, Alpha_ptr, Beta_ptr, n, oh, ow, co, p_ok, co_ok,
                              CO, OH, OW, sgn, sgc, sgh, sgw, syn, syc, syh, syw, FOLD,
                              AFFINE_FOLD)
        storage = X_ptr.dtype.element_ty
        acc = tl.dot(tl.trans(a.to(storage)), g.to(storage), acc, input_precision="ieee")
    dw_offs = (((split * C + ci[:, None]) * CO + co[None, :]) * KH + kh) * KW + kw
    tl.store(DW_ptr + dw_offs, acc, mask=ci_ok[:, None] & co_ok[None, :])


@triton.jit
def _bias_grad_kernel(
    G_ptr, FoldY_ptr, Alpha_ptr, Beta_ptr,      # as _conv_wgrad_kernel's
    DB_ptr,                                     # (splits, CO) float32 partials
    CO, OH, OW, rows, rows_per_split, sgn, sgc, sgh, sgw, syn, syc, syh, syw,
    FOLD: tl.constexpr, AFFINE_FOLD: tl.constexpr, BLOCK_P: tl.constexpr,
    BLOCK_CO: tl.constexpr,
):
    """dbias[co] = sum over output pixels of the (completed) output gradient: one program per
    (pixel split, output-channel block)."""
    split = tl.program_id(0).to(tl.int64)
    co = tl.program_id(1).to(tl.int64) * BLOCK_CO + tl.arange(0, BLOCK_CO).to(tl.int64)
    co_ok = co < CO
    row_begin = split * rows_per_split
    row_end = tl.minimum(row_begin + rows_per_split, rows)
    acc = tl.zeros((BLOCK_P, BLOCK_CO), tl.float32)
    for start in range(0, rows_per_split, BLOCK_P):
        p = row_begin + start + tl.arange(0, BLOCK_P).to(tl.int64)
        n = p // (OH * OW)
        oh = (p % (OH * OW)) // OW
        ow = p % OW
        acc += _load_folded_grad(G_ptr, FoldY_ptr, Alpha_ptr, Beta_ptr, n, oh, ow, co,
                                 p < row_end, co_ok, CO, OH, OW, sgn, sgc, sgh, sgw, syn, syc,
                                 syh, syw, FOLD, AFFINE_FOLD)
    tl.store(DB_ptr + split * CO + co, tl.sum(acc, axis=0), mask=co_ok)


def conv_wgrad_launch_options(constexprs: dict, device: torch.device) -> dict:
    """num_warps and num_stages of a _conv_wgrad_kernel launch with these constexprs
    (conv_fused.gemm_launch_options: the prologue's and the fold's coefficients are both loaded
    in the pixel loop)."""
    return gemm_launch_options(
        constexprs["BLOCK_CI"], constexprs["BLOCK_CO"],
        AFFINE_PER_SAMPLE in (constexprs["AFFINE"], constexprs["AFFINE_FOLD"]), device)


# Programs a wgrad or bias-gradient launch aims for (None: 1 split in the interpreter, else 4
# per SM).
WGRAD_PROGRAMS = None
# The pixels a wgrad program step loads in the interpreter's one split: it runs a step's
# operations one by one at a cost per operation, not per element, so larger steps cost less
# (a tiny U-Net + PatchGAN training step through the interpreter: 62 s with gemm_blocks' 32,
# 44 s with 128). Only the K loop's step changes: the tiles of weight, and of the forward's
# outputs and statistics, stay the GPU's.
INTERPRETER_PIXEL_BLOCK = 128


def _pixel_block(depth_block: int, device: torch.device) -> int:
    """The pixels one wgrad program step loads: gemm_blocks' depth block on a GPU and wherever
    WGRAD_PROGRAMS splits the launch as a GPU does (the tests of the split), else
    INTERPRETER_PIXEL_BLOCK."""
    interpreted_one_split = device.type == "cpu" and not WGRAD_PROGRAMS
    return INTERPRETER_PIXEL_BLOCK if interpreted_one_split else depth_block


def _splits(rows: int, programs_without_split: int, block_p: int, device: torch.device):
    """(splits, rows_per_split) of a wgrad or bias-gradient launch (grid.reduction_splits)."""
    return reduction_splits(rows, block_p, programs_without_split, device,
                            override=WGRAD_PROGRAMS, interpreted=device.type == "cpu")


def conv_fused_wgrad(grad_y, x, transform: InputTransform = IDENTITY, *, kernel_size, stride,
                     padding, transposed=False, slope=0.2, fold: Optional[GradFold] = None):
    """d loss / d weight for the channels of one source x of conv_fused_fwd, float32: shaped
    (C_out, C, KH, KW) for a direct convolution, (C, C_out, KH, KW) for a transposed one (the
    caller concatenates the sources' slices along the weight's input-channel dim).
    ``fold``: grad_y is completed while it is loaded (GradFold: by the statistics' share, or by
    an output tanh's derivative)."""
    _check_storage(x, grad_y)
    _check_transform(transform, x)
    N, C, H, W = x.shape
    _, CO, OH, OW = grad_y.shape
    KH, KW = kernel_size
    block_ci, block_co, block_depth = gemm_blocks(C, CO, 64, x.dtype, x.device)
    block_p = _pixel_block(block_depth, x.device)
    rows = N * (H * W if transposed else OH * OW)
    channel_programs = triton.cdiv(C, block_ci) * triton.cdiv(CO, block_co)
    splits, rows_per_split = _splits(rows, KH * KW * channel_programs, block_p, x.device)
    partial = torch.empty((splits, C, CO, KH, KW), dtype=torch.float32, device=x.device)
    x_args, (affine, activation, dropout) = _transform_args(transform, x)
    threshold, keep_scale = _dropout_args((transform,))
    fold_args = _fold_args(fold, grad_y)
    grid = (KH * KW * splits, triton.cdiv(C, block_ci), triton.cdiv(CO, block_co))
    constexprs = dict(
        STRIDE=stride, PADDING=padding, KH=KH, KW=KW, TRANSPOSED=transposed, AFFINE=affine,
        ACTIVATION=activation, DROPOUT=dropout, FOLD=fold_code(fold),
        AFFINE_FOLD=_affine_code(fold.alpha) if fold is not None else 0,
        BLOCK_P=block_p, BLOCK_CI=block_ci, BLOCK_CO=block_co)
    _conv_wgrad_kernel[grid](
        x, *x_args, grad_y, *fold_args, partial, C, H, W, CO, OH, OW, rows, rows_per_split,
        splits, *x.stride(), *grad_y.stride(), *fold_args[0].stride(), float(slope), threshold,
        keep_scale, **constexprs, **conv_wgrad_launch_options(constexprs, x.device))
    grad = partial[0] if splits == 1 else partial.sum(0)
    return grad if transposed else grad.transpose(0, 1)


def _fold_args(fold: Optional[GradFold], grad_y):
    """(y, alpha, beta) kernel arguments of a fold, dummies where it has none of them; alpha and
    beta, indexed densely, through contiguous copies if strided (y's strides are passed)."""
    if fold is None:
        return (grad_y,) * 3
    alpha, beta = (grad_y if t is None else dense_vector(t) for t in (fold.alpha, fold.beta))
    return fold.y, alpha, beta


def conv_fused_bias_grad(grad_y, fold: Optional[GradFold] = None):
    """d loss / d bias of conv_fused_fwd, float32 (C_out,): grad_y summed over its images and
    pixels, completed by ``fold`` while it is loaded (GradFold) — one pass, the completed
    gradient never written."""
    _check_storage(grad_y, *(() if fold is None else (fold.y,)))
    N, CO, OH, OW = grad_y.shape
    rows = N * OH * OW
    block_p, block_co = 128, min(64, triton.next_power_of_2(CO))
    channel_programs = triton.cdiv(CO, block_co)
    splits, rows_per_split = _splits(rows, channel_programs, block_p, grad_y.device)
    partial = torch.empty((splits, CO), dtype=torch.float32, device=grad_y.device)
    fold_args = _fold_args(fold, grad_y)
    _bias_grad_kernel[(splits, channel_programs)](
        grad_y, *fold_args, partial, CO, OH, OW, rows, rows_per_split, *grad_y.stride(),
        *fold_args[0].stride(), FOLD=fold_code(fold),
        AFFINE_FOLD=_affine_code(fold.alpha) if fold is not None else 0,
        BLOCK_P=block_p, BLOCK_CO=block_co)
    return partial[0] if splits == 1 else partial.sum(0)
