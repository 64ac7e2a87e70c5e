"""Fused implicit-GEMM convolution, NHWC, fp32 accumulate. Fused: the previous norm's
scale/shift + activation + dropout applied as the input tile loads (padding zero after them), the
bias and the next norm's tile moments (or, for a network's output layer, a tanh) in the epilogue;
recomputed in backward: all of the prologue.

Details. A transposed convolution runs as STRIDE**2 phase sub-convolutions (oh = a * STRIDE +
phase); the decoder's skip-concat is two K-ranges (two sources, each with its own prologue), so no
concatenated buffer exists. Tile moments (count, mean, M2) are Chan-merged by a tiny finishing
kernel (kernels/conv_stats_finish.py) that also yields the next prologue's scale/shift. dgrad is
the same kernel in the other direction (direct <-> transposed): its epilogue recomputes the
forward prologue from the pre-norm input, stores the input gradient and reduces the gradients of
scale and shift (sum g * x, sum g: the norm backward's two reductions up to the affine); its
loads can complete the output gradient from the stored output (GradFold: the share that comes
through the output's statistics, or the output tanh's derivative). wgrad
(kernels/conv_fused_wgrad.py) recomputes the activated input and loads the gradient the same
way. Only pre-norm tensors (the tanh'd output for an output layer) and per-channel statistics
are kept for the backward.
"""
from typing import Optional

import torch
import triton
import triton.language as tl

from fastp2p.kernels.codes import ACTIVATION_CODES
from fastp2p.kernels.conv_fused_tiles import (AFFINE_NONE, AFFINE_PER_CHANNEL, AFFINE_PER_SAMPLE,
                                              _load_activated, _load_folded_grad, _output_rows,
                                              _prologue_coefficients, _prologue_grad, _tanh)
# The argument types live in a triton-free module (the backend contract names them).
from fastp2p.kernels.conv_fused_types import (IDENTITY, OUTPUT_ACTIVATIONS, GradFold,  # noqa: F401
                                              InputTransform, TilePartials, fold_code)
from fastp2p.kernels.dropout_rng import dropout_threshold
# The kernels index per-channel vectors (scale, shift, bias, gamma, beta, running statistics)
# as dense arrays: a strided one (a user's view, b[::2], s.t()) goes through a contiguous
# copy (dense_vector), as in norm_act's launchers.
from fastp2p.kernels.norm_act import dense_vector
from fastp2p.kernels.norm_act_tiles import _rng_start

# Storage dtypes; products are accumulated in float32 (tl.dot with input_precision="ieee": no
# TF32 rounding of float32 operands, so the float32 path meets DESIGN §5's 1e-5 on a GPU too).
STORAGE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _accumulate_source(acc, X_ptr, Scale_ptr, Shift_ptr, Seed, Offset, Fold_ptr, W_ptr, c_base,
                       C, H, W, sxn, sxc, sxh, sxw, sfn, sfc, sfh, sfw, swo, swi, swh, sww, n,
                       phase_h, phase_w, oh, ow, row_ok, co, co_ok, slope, threshold, keep_scale,
                       STRIDE: tl.constexpr, PADDING: tl.constexpr, KH: tl.constexpr,
                       KW: tl.constexpr, TRANSPOSED: tl.constexpr, AFFINE: tl.constexpr,
                       ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr, FOLD: tl.constexpr,
                       BLOCK_K: tl.constexpr):
    """acc += activated source tile @ weight tile over this source's K-range: every tap
    (kh, kw) x channel block. The weight's input-channel index of the source's channel c is
    c_base + c (the second source of a concat starts after the first). FOLD (dgrad, a
    GradFold code): the source is an output gradient completed from y at Fold_ptr as it loads
    (``_load_folded_grad``: g + scale * y + shift, or g * (1 - y^2) after an output tanh)
    instead of going through the activation prologue."""
    seed_mixed, offset = _rng_start(Seed, Offset, DROPOUT)
    taps_h: tl.constexpr = KH // STRIDE if TRANSPOSED else KH
    taps_w: tl.constexpr = KW // STRIDE if TRANSPOSED else KW
    for th in range(taps_h):
        if TRANSPOSED:  # the taps of this output phase: oh = ih * STRIDE - PADDING + kh
            kh = (phase_h + PADDING) % STRIDE + STRIDE * th
            ih = (oh + PADDING - kh) // STRIDE  # exact: the numerator is a multiple of STRIDE
        else:
            kh = th
            ih = oh * STRIDE - PADDING + kh
        for tw in range(taps_w):
            if TRANSPOSED:
                kw = (phase_w + PADDING) % STRIDE + STRIDE * tw
                iw = (ow + PADDING - kw) // STRIDE
            else:
                kw = tw
                iw = ow * STRIDE - PADDING + kw
            for c0 in range(0, C, BLOCK_K):
                ci = c0 + tl.arange(0, BLOCK_K).to(tl.int64)
                ci_ok = ci < C
                if FOLD != 0:
                    a = _load_folded_grad(X_ptr, Fold_ptr, Scale_ptr, Shift_ptr, n, ih, iw, ci,
                                          row_ok, ci_ok, C, H, W, sxn, sxc, sxh, sxw, sfn, sfc,
                                          sfh, sfw, FOLD, AFFINE)
                else:
                    a = _load_activated(X_ptr, Scale_ptr, Shift_ptr, n, ih, iw, ci, row_ok,
                                        ci_ok, C, H, W, sxn, sxc, sxh, sxw, slope, seed_mixed,
                                        offset, threshold, keep_scale, AFFINE, ACTIVATION,
                                        DROPOUT)
                w_offs = ((c_base + ci) * swi)[:, None] + (co * swo)[None, :] + kh * swh + kw * sww
                w = tl.load(W_ptr + w_offs, mask=ci_ok[:, None] & co_ok[None, :], other=0.0)
                acc = tl.dot(a.to(w.dtype), w, acc, input_precision="ieee")
    return acc


@triton.jit(do_not_specialize=["SeedA", "OffsetA", "SeedB", "OffsetB", "SeedX", "OffsetX"])
def _conv_fused_kernel(
    A_ptr, ScaleA_ptr, ShiftA_ptr, SeedA, OffsetA,   # source A (N, CA, H, W) and its prologue
    FoldA_ptr,                                       # FOLD_A: y of the gradient A (N, CA, H, W)
    B_ptr, ScaleB_ptr, ShiftB_ptr, SeedB, OffsetB,   # source B (N, CB, H, W) (TWO_SOURCES)
    W_ptr,                                           # weight, (out ch, in ch: A then B, kh, kw)
    Bias_ptr,                                        # (CO,) (HAS_BIAS) or a dummy
    Y_ptr,                                           # (N, CO, OH, OW) output
    X_ptr, ScaleX_ptr, ShiftX_ptr, SeedX, OffsetX,   # dgrad: forward input (N, CO, OH, OW)
    PartA_ptr, PartB_ptr,                            # (N, T, CO) f32: mean, M2 | sum g, sum g*x
    PartCount_ptr,                                   # (N, T) f32 rows of each tile
    CA, CB, H, W, CO, OH, OW, QH, QW, tiles_per_phase, T,
    san, sac, sah, saw, sfn, sfc, sfh, sfw, sbn, sbc, sbh, sbw,
    swo, swi, swh, sww, syn, syc, syh, syw, sxn, sxc, sxh, sxw,
    slope, threshold, keep_scale,
    STRIDE: tl.constexpr, PADDING: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    TRANSPOSED: tl.constexpr, TWO_SOURCES: tl.constexpr,
    AFFINE_A: tl.constexpr, ACTIVATION_A: tl.constexpr, DROPOUT_A: tl.constexpr,
    FOLD_A: tl.constexpr,
    AFFINE_B: tl.constexpr, ACTIVATION_B: tl.constexpr, DROPOUT_B: tl.constexpr,
    HAS_BIAS: tl.constexpr, TANH: tl.constexpr, DGRAD: tl.constexpr, PARTIALS: tl.constexpr,
    AFFINE_X: tl.constexpr, ACTIVATION_X: tl.constexpr, DROPOUT_X: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One (BLOCK_M output pixels of one image and phase) x (BLOCK_N output channels) tile.

    Forward (DGRAD False): y = conv(prologue_A(A) ++ prologue_B(B)) + bias, tanh'd with TANH,
    and with PARTIALS the tile's per-channel (mean, M2) and row count. DGRAD: A is the output
    gradient (completed as it loads when FOLD_A, a GradFold code), the result
    is d loss / d a of the forward's input x; the epilogue turns it into g = d loss / d z
    (z = x * scale + shift, recomputing activation and dropout), stores g * scale (the gradient
    of x) and with PARTIALS the tile's sum g and sum g * x (the gradients of shift and scale)."""
    phase_stride: tl.constexpr = STRIDE if TRANSPOSED else 1
    image, phase_h, phase_w, tile, oh, ow, row_ok = _output_rows(
        tl.program_id(0), tiles_per_phase, QH, QW, OH, OW, phase_stride, BLOCK_M)
    n = tl.zeros_like(oh) + image
    co = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    co_ok = co < CO
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    acc = _accumulate_source(acc, A_ptr, ScaleA_ptr, ShiftA_ptr, SeedA, OffsetA, FoldA_ptr,
                             W_ptr, 0, CA, H, W, san, sac, sah, saw, sfn, sfc, sfh, sfw, swo,
                             swi, swh, sww, n, phase_h, phase_w, oh, ow, row_ok, co, co_ok,
                             slope, threshold, keep_scale, STRIDE, PADDING, KH, KW, TRANSPOSED,
                             AFFINE_A, ACTIVATION_A, DROPOUT_A, FOLD_A, BLOCK_K)
    if TWO_SOURCES:
        acc = _accumulate_source(acc, B_ptr, ScaleB_ptr, ShiftB_ptr, SeedB, OffsetB, B_ptr,
                                 W_ptr, CA, CB, H, W, sbn, sbc, sbh, sbw, sbn, sbc, sbh, sbw,
                                 swo, swi, swh, sww, n, phase_h, phase_w, oh, ow, row_ok, co,
                                 co_ok, slope, threshold, keep_scale, STRIDE, PADDING, KH, KW,
                                 TRANSPOSED, AFFINE_B, ACTIVATION_B, DROPOUT_B, 0, BLOCK_K)
    mask = row_ok[:, None] & co_ok[None, :]
    y_offs = (n * syn + oh * syh + ow * syw)[:, None] + (co * syc)[None, :]
    if DGRAD:
        x_offs = (n * sxn + oh * sxh + ow * sxw)[:, None] + (co * sxc)[None, :]
        x = tl.load(X_ptr + x_offs, mask=mask, other=0.0).to(tl.float32)
        scale, shift = _prologue_coefficients(ScaleX_ptr, ShiftX_ptr, n, co, CO, mask, co_ok,
                                              AFFINE_X)
        seed_mixed, offset = _rng_start(SeedX, OffsetX, DROPOUT_X)
        g = _prologue_grad(acc, x, scale, shift, n, co, oh * OW + ow, CO, OH * OW, slope,
                           seed_mixed, offset, threshold, keep_scale, ACTIVATION_X, DROPOUT_X)
        g = tl.where(mask, g, 0.0)
        tl.store(Y_ptr + y_offs, (g * scale).to(Y_ptr.dtype.element_ty), mask=mask)
        part_a = tl.sum(g, axis=0)
        part_b = tl.sum(g * x, axis=0)
    else:
        y = acc
        if HAS_BIAS:
            y += tl.load(Bias_ptr + co, mask=co_ok, other=0.0).to(tl.float32)[None, :]
        if TANH:  # the network's output activation: no launch of its own
            y = _tanh(y)
        y = y.to(Y_ptr.dtype.element_ty)
        tl.store(Y_ptr + y_offs, y, mask=mask)
        if PARTIALS:
            # Moments of the stored values (bf16-rounded where the output is bf16), as the
            # unfused norm would see them; two-pass within the tile, Chan across tiles. Summed
            # as y - pivot (the tile's first row): a sum of y itself loses a large mean's
            # spread (a constant output at 1e3 came out with a variance); y - pivot is exact
            # near the mean.
            count = tl.sum(row_ok.to(tl.float32), axis=0)
            y = tl.where(mask, y.to(tl.float32), 0.0)
            pivot = tl.sum(tl.where((tl.arange(0, BLOCK_M) == 0)[:, None], y, 0.0), axis=0)
            shifted = tl.where(mask, y - pivot[None, :], 0.0)
            shifted_mean = tl.sum(shifted, axis=0) / tl.maximum(count, 1.0)
            centered = tl.where(mask, shifted - shifted_mean[None, :], 0.0)
            part_a = pivot + shifted_mean
            part_b = tl.sum(centered * centered, axis=0)
            tl.store(PartCount_ptr + image * T + tile, count)
    if PARTIALS:
        at = (image * T + tile) * CO + co
        tl.store(PartA_ptr + at, part_a, mask=co_ok)
        tl.store(PartB_ptr + at, part_b, mask=co_ok)


# ----------------------------------------------------------------------------- host launchers

def _check_storage(*tensors: torch.Tensor) -> None:
    """One supported storage dtype for the GEMM operands (sources, weight, gradients)."""
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1 or not dtypes <= set(STORAGE_DTYPES):
        raise TypeError(f"fused conv: operands must share one dtype of {STORAGE_DTYPES}, got "
                        f"{sorted(map(str, dtypes))}")


def _affine_code(scale: Optional[torch.Tensor]) -> int:
    if scale is None:
        return AFFINE_NONE
    return AFFINE_PER_SAMPLE if scale.dim() == 2 else AFFINE_PER_CHANNEL


def _check_transform(transform: InputTransform, x: torch.Tensor) -> None:
    """scale and shift: both or neither, float32 (N, C) or (C,) for x (N, C, H, W); dropout p
    in [0, 1), refused as norm_act refuses it (dropout_threshold)."""
    if (transform.scale is None) != (transform.shift is None):
        raise ValueError("fused conv: give an InputTransform both scale and shift, or neither")
    if transform.activation not in ACTIVATION_CODES:
        raise ValueError(f"fused conv: activation must be one of {tuple(ACTIVATION_CODES)}, "
                         f"got {transform.activation!r}")
    dropout_threshold(transform.dropout_p)
    if transform.scale is None:
        return
    allowed = ((x.shape[0], x.shape[1]), (x.shape[1],))
    for name, t in (("scale", transform.scale), ("shift", transform.shift)):
        if tuple(t.shape) not in allowed or t.dtype != torch.float32 or t.device != x.device:
            raise ValueError(f"fused conv: {name} must be float32 of shape {allowed[0]} or "
                             f"{allowed[1]} on {x.device}, got {t.dtype} {tuple(t.shape)} on "
                             f"{t.device}")
    if transform.scale.shape != transform.shift.shape:
        raise ValueError("fused conv: scale and shift must have the same shape")


def _transform_args(transform: InputTransform, dummy: torch.Tensor):
    """(scale, shift, seed, offset) kernel arguments of a prologue (scale / shift dense), and
    its constexpr flags."""
    dropout = transform.dropout_p > 0
    rng = [value if isinstance(value, torch.Tensor)
           else torch.tensor(int(value), dtype=torch.int64, device=dummy.device)
           for value in (transform.seed, transform.offset)] if dropout else [dummy, dummy]
    args = (dummy if transform.scale is None else dense_vector(transform.scale),
            dummy if transform.shift is None else dense_vector(transform.shift), *rng)
    return args, (_affine_code(transform.scale), ACTIVATION_CODES[transform.activation], dropout)


def _dropout_args(transforms) -> tuple:
    """(threshold, keep_scale) shared by the launch's dropped tensors: same p for all."""
    ps = {t.dropout_p for t in transforms if t.dropout_p > 0}
    if len(ps) > 1:
        raise ValueError(f"fused conv: one dropout probability per launch, got {sorted(ps)}")
    if not ps:
        return 0, 1.0
    p = ps.pop()
    return dropout_threshold(p), 1.0 / (1.0 - p)


def gemm_blocks(rows: int, cols: int, depth: int, dtype: torch.dtype, device: torch.device):
    """(BLOCK rows, BLOCK cols, BLOCK depth) of an implicit GEMM: powers of two from 16
    (tl.dot's minimum) up to 64 x 64 x 32 -- 128 x 128 x 64 for 16-bit operands on a GPU (usual
    tensor-core tiles; not yet tuned by a measurement). float32 keeps the small tiles: its IEEE
    dot runs on CUDA cores, for proofs rather than speed."""
    large = device.type == "cuda" and dtype != torch.float32
    block_rows = min(128 if large else 64, max(16, triton.next_power_of_2(rows)))
    block_cols = min(128 if large else 64, max(16, triton.next_power_of_2(cols)))
    block_depth = min(64 if large else 32, max(16, triton.next_power_of_2(depth)))
    return block_rows, block_cols, block_depth


def gemm_launch_options(block_rows: int, block_cols: int, per_sample: bool,
                        device: torch.device) -> dict:
    """num_warps and num_stages of a fused-conv GEMM launch, for both kernels' launch-options
    functions (which benchmarks/compile_conv_fused_for_gpu.py compiles with too): 8 warps for a
    128 x 128 tile; 3 pipeline stages, 2 when the K loop gathers per-(image, channel)
    coefficients (``per_sample``: an instance norm's prologue or GradFold), 1 in the
    interpreter.

    Why 2: Triton's pipeliner keeps a copy of every tile the loop loads per extra stage, and
    per-sample coefficients are two float32 tiles (64 KiB at 128 x 64) besides the 16-bit
    operands. Measured for sm_90 (Triton 3.9 and 3.6, bf16, 128 x 128 x 64, 8 warps,
    channels-last operands), against its 232448 bytes per block (benchmarks/sm90.py): at 3
    stages wgrad needs 393216 bytes with an instance-norm prologue and fold, 221184 to 262144
    with one of them, dgrad 262144 with an instance fold, the forward 229376 with an
    instance-norm prologue; at 2 stages at most 212992. Without per-sample coefficients 3
    stages need at most 132096."""
    if device.type == "cpu":
        stages = 1
    else:
        stages = 2 if per_sample else 3
    return dict(num_warps=8 if block_rows * block_cols >= 128 * 128 else 4, num_stages=stages)


def conv_fused_launch_options(constexprs: dict, device: torch.device) -> dict:
    """num_warps and num_stages of a _conv_fused_kernel launch with these constexprs."""
    return gemm_launch_options(
        constexprs["BLOCK_M"], constexprs["BLOCK_N"],
        AFFINE_PER_SAMPLE in (constexprs["AFFINE_A"], constexprs["AFFINE_B"]), device)


def output_size(size: int, kernel: int, stride: int, padding: int, transposed: bool) -> int:
    if transposed:
        return (size - 1) * stride - 2 * padding + kernel
    return (size + 2 * padding - kernel) // stride + 1


def _empty_nhwc(shape, like: torch.Tensor, dtype=None) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device,
                       memory_format=torch.channels_last)


def _launch(sources, transforms, weight, weight_roles, bias, y, *, kernel_size, stride, padding,
            transposed, slope, partials, tanh=False, dgrad_input=None, dgrad_transform=IDENTITY,
            fold: Optional[GradFold] = None):
    """Run _conv_fused_kernel over y; weight_roles: the weight's dims of (output channel, input
    channel) of this launch. Returns the TilePartials, or None without partials."""
    if len(sources) not in (1, 2) or len(transforms) != len(sources):
        raise ValueError(f"fused conv: 1 or 2 sources with one InputTransform each, got "
                         f"{len(sources)} sources and {len(transforms)} transforms")
    if len({(s.shape[0],) + tuple(s.shape[2:]) for s in sources}) != 1:
        raise ValueError("fused conv: the sources must share batch, height and width, got "
                         f"{[tuple(s.shape) for s in sources]}")
    for source, transform in zip(sources, transforms):
        _check_transform(transform, source)
    a, ta = sources[0], transforms[0]
    folding = fold_code(fold)
    if fold is not None:  # source A is a gradient: its "scale/shift" are the fold's alpha/beta
        ta = InputTransform(fold.alpha, fold.beta)
    _check_storage(*sources, weight)
    two = len(sources) == 2
    b, tb = (sources[1], transforms[1]) if two else (a, IDENTITY)
    N, CA, H, W = a.shape
    CB = b.shape[1] if two else 0
    _, CO, OH, OW = y.shape
    KH, KW = kernel_size
    if transposed and (KH % stride or KW % stride):
        raise ValueError(f"fused transposed conv: kernel {KH}x{KW} must be a multiple of the "
                         f"stride {stride}")
    phase_stride = stride if transposed else 1
    QH, QW = triton.cdiv(OH, phase_stride), triton.cdiv(OW, phase_stride)
    block_m, block_n, block_k = gemm_blocks(QH * QW, CO, max(CA, CB), a.dtype, a.device)
    tiles_per_phase = triton.cdiv(QH * QW, block_m)
    T = phase_stride * phase_stride * tiles_per_phase
    if partials:
        out = TilePartials(y.new_empty((N, T, CO), dtype=torch.float32),
                           y.new_empty((N, T, CO), dtype=torch.float32),
                           y.new_empty((N, T), dtype=torch.float32))
    else:
        out = None
    part_args = (out.a, out.b, out.count) if partials else (y, y, y)
    a_args, (aff_a, act_a, drop_a) = _transform_args(ta, a)
    fold_y = fold.y if fold is not None else a
    b_args, (aff_b, act_b, drop_b) = _transform_args(tb, a)
    x = dgrad_input if dgrad_input is not None else a
    x_args, (aff_x, act_x, drop_x) = _transform_args(dgrad_transform, a)
    threshold, keep_scale = _dropout_args((ta, tb, dgrad_transform))
    w_out, w_in = weight_roles
    ws = weight.stride()
    grid = (N * T, triton.cdiv(CO, block_n))
    constexprs = dict(
        STRIDE=stride, PADDING=padding, KH=KH, KW=KW, TRANSPOSED=transposed, TWO_SOURCES=two,
        AFFINE_A=aff_a, ACTIVATION_A=act_a, DROPOUT_A=drop_a, FOLD_A=folding,
        AFFINE_B=aff_b, ACTIVATION_B=act_b, DROPOUT_B=drop_b,
        HAS_BIAS=bias is not None, TANH=tanh, DGRAD=dgrad_input is not None, PARTIALS=partials,
        AFFINE_X=aff_x, ACTIVATION_X=act_x, DROPOUT_X=drop_x,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    _conv_fused_kernel[grid](
        a, *a_args, fold_y, b, *b_args, weight, a if bias is None else dense_vector(bias), y, x,
        *x_args,
        *part_args, CA, CB, H, W, CO, OH, OW, QH, QW, tiles_per_phase, T,
        *a.stride(), *fold_y.stride(), *b.stride(), ws[w_out], ws[w_in], ws[2], ws[3],
        *y.stride(), *x.stride(),
        float(slope), threshold, keep_scale,
        **constexprs, **conv_fused_launch_options(constexprs, a.device))
    return out


def conv_fused_fwd(sources, transforms, weight, bias=None, *, stride, padding,
                   transposed=False, slope=0.2, partials=True, output_activation="none",
                   out=None):
    """y = conv(cat([prologue_i(sources[i])], channels)) + bias, no concatenation written;
    ``output_activation`` "tanh": y = tanh(that) (a network's output layer; no partials then,
    since no norm reads a tanh'd output).

    sources: one or two (N, C_i, H, W) tensors (any strides; NHWC native) of one dtype;
    transforms: an InputTransform per source. weight: (C_out, sum C_i, KH, KW) for a direct
    convolution, (sum C_i, C_out, KH, KW) for a transposed one (nn.ConvTranspose2d's layout, no
    output_padding). Returns (y, TilePartials of y's (mean, M2, rows) or None); y is
    channels-last unless ``out`` (of the output shape) is given."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"conv_fused_fwd: output_activation must be one of "
                         f"{OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    tanh = output_activation == "tanh"
    if tanh and partials:
        raise ValueError("conv_fused_fwd: output_activation='tanh' takes partials=False (a "
                         "tanh'd output feeds no norm's statistics)")
    a = sources[0]
    KH, KW = weight.shape[2:]
    co = weight.shape[1] if transposed else weight.shape[0]
    shape = (a.shape[0], co, output_size(a.shape[2], KH, stride, padding, transposed),
             output_size(a.shape[3], KW, stride, padding, transposed))
    if out is not None and (tuple(out.shape) != shape or out.dtype != a.dtype):
        raise ValueError(f"conv_fused_fwd: out must be {a.dtype} of shape {shape}, got "
                         f"{out.dtype} {tuple(out.shape)}")
    y = out if out is not None else _empty_nhwc(shape, a)
    parts = _launch(sources, transforms, weight, (1, 0) if transposed else (0, 1), bias, y,
                    kernel_size=(KH, KW), stride=stride, padding=padding, transposed=transposed,
                    slope=slope, partials=partials, tanh=tanh)
    return y, parts


def conv_fused_dgrad(grad_y, weight, x, transform, *, channel_offset=0, stride, padding,
                     transposed=False, slope=0.2, fold: Optional[GradFold] = None, out=None):
    """The gradients through one source x of conv_fused_fwd (its channels start at
    ``channel_offset`` of the weight's input channels): (grad_x, grad_scale, grad_shift), the
    last two None when the transform has no scale (else shaped like transform.scale, float32).

    The launch is the opposite direction's convolution of grad_y; its epilogue recomputes the
    prologue from x (activation derivative, dropout mask) and reduces sum g * x and sum g.
    ``fold``: grad_y is completed while it is loaded (GradFold: by the statistics' share, or
    by an output tanh's derivative)."""
    C = x.shape[1]
    in_dim = 0 if transposed else 1
    w = weight.narrow(in_dim, channel_offset, C)
    if out is not None and out.shape != x.shape:
        raise ValueError(f"conv_fused_dgrad: out must be shaped like x {tuple(x.shape)}, got "
                         f"{tuple(out.shape)}")
    grad_x = out if out is not None else _empty_nhwc(x.shape, x)
    with_affine = transform.scale is not None
    _check_transform(transform, x)
    parts = _launch((grad_y,), (IDENTITY,), w, (in_dim, 1 - in_dim), None, grad_x,
                    kernel_size=tuple(weight.shape[2:]), stride=stride, padding=padding,
                    transposed=not transposed, slope=slope, partials=with_affine,
                    dgrad_input=x, dgrad_transform=transform, fold=fold)
    if not with_affine:
        return grad_x, None, None
    per_sample = transform.scale.dim() == 2
    dims = (1,) if per_sample else (0, 1)
    return grad_x, parts.b.sum(dims), parts.a.sum(dims)
