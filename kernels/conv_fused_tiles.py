"""The pieces shared by the fused-convolution kernels: the input prologue (the previous norm's
scale/shift, the activation and the dropout mask applied while a tile is loaded), its backward,
the row addressing of the implicit GEMM, the epilogue's output tanh and the output gradient's
load completed by a GradFold.

Tensors are logical NCHW addressed through their strides (NHWC is native); math in float32.
The dropout mask is norm_act's counter RNG (``norm_act_tiles._dropout_keep``, the same bits as
``fastp2p.ops.dropout_rng``), indexed by the element's NCHW index in the dropped tensor.
"""
import triton
import triton.language as tl

from fastp2p.kernels.norm_act_tiles import _dropout_keep

# Prologue affine modes (tl.constexpr AFFINE): none, per (image, channel) (instance norm), per
# channel (batch norm). Activation codes as in kernels/norm_act.py.
AFFINE_NONE, AFFINE_PER_SAMPLE, AFFINE_PER_CHANNEL = 0, 1, 2


@triton.jit
def _prologue_coefficients(Scale_ptr, Shift_ptr, n, c, C, mask, col_ok, AFFINE: tl.constexpr):
    """(scale, shift) broadcastable to a (rows, channels) tile: per (n, c), per c, or identity.
    ``n`` is the rows' image index (a vector), ``mask`` the tile's."""
    if AFFINE == 1:
        at = n[:, None] * C + c[None, :]
        scale = tl.load(Scale_ptr + at, mask=mask, other=0.0).to(tl.float32)
        shift = tl.load(Shift_ptr + at, mask=mask, other=0.0).to(tl.float32)
    elif AFFINE == 2:
        scale = tl.load(Scale_ptr + c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        shift = tl.load(Shift_ptr + c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    else:
        scale = 1.0
        shift = 0.0
    return scale, shift


@triton.jit
def _activate(z, slope, ACTIVATION: tl.constexpr):
    if ACTIVATION == 1:
        z = tl.maximum(z, 0.0)
    elif ACTIVATION == 2:
        z = tl.where(z > 0, z, z * slope)
    return z


@triton.jit
def _load_activated(X_ptr, Scale_ptr, Shift_ptr, n, ih, iw, c, row_ok, col_ok, C, H, W,
                    sxn, sxc, sxh, sxw, slope, seed_mixed, offset, threshold, keep_scale,
                    AFFINE: tl.constexpr, ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr):
    """The prologue: dropout(act(x * scale + shift)) of rows (n, ih, iw) x channels c, in
    float32; positions outside the image (the convolution's zero padding) and masked lanes are
    0 *after* the transform, as in the unfused network (pad the activation, not x)."""
    inside = row_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    mask = inside[:, None] & col_ok[None, :]
    offs = (n * sxn + ih * sxh + iw * sxw)[:, None] + (c * sxc)[None, :]
    x = tl.load(X_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    scale, shift = _prologue_coefficients(Scale_ptr, Shift_ptr, n, c, C, mask, col_ok, AFFINE)
    a = _activate(x * scale + shift, slope, ACTIVATION)
    if DROPOUT:
        keep = _dropout_keep(n, ih * W + iw, c, C, H * W, seed_mixed, offset, threshold)
        a = tl.where(keep, a * keep_scale, 0.0)
    return tl.where(mask, a, 0.0)


@triton.jit
def _prologue_grad(g, x, scale, shift, n, c, hw, C, HW, slope, seed_mixed, offset, threshold,
                   keep_scale, ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr):
    """d loss / d z from d loss / d a, where a = dropout(act(z)) and z = x * scale + shift,
    recomputing z, the activation's derivative and the dropout mask (nothing stored)."""
    if DROPOUT:
        keep = _dropout_keep(n, hw, c, C, HW, seed_mixed, offset, threshold)
        g = tl.where(keep, g * keep_scale, 0.0)
    z = x * scale + shift
    if ACTIVATION == 1:
        g = tl.where(z > 0, g, 0.0)
    elif ACTIVATION == 2:
        g = tl.where(z > 0, g, g * slope)
    return g


@triton.jit
def _output_rows(pid_m, tiles_per_phase, QH, QW, OH, OW, PHASE_STRIDE: tl.constexpr,
                 BLOCK_M: tl.constexpr):
    """This program's output rows: (n, phase_h, phase_w, tile index in its image, oh, ow,
    row mask). Programs along axis 0 enumerate (image, phase, tile); a phase is one of the
    PHASE_STRIDE**2 output sub-grids oh = a * PHASE_STRIDE + phase_h (transposed convolution;
    1 phase for a direct one), a QH x QW grid. A tile never straddles two images, so per-image
    statistics need no atomics."""
    phases: tl.constexpr = PHASE_STRIDE * PHASE_STRIDE
    pid = pid_m.to(tl.int64)
    n = pid // (phases * tiles_per_phase)
    tile_in_image = pid % (phases * tiles_per_phase)
    phase = tile_in_image // tiles_per_phase
    phase_h = phase // PHASE_STRIDE
    phase_w = phase % PHASE_STRIDE
    r = (tile_in_image % tiles_per_phase) * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    oh = (r // QW) * PHASE_STRIDE + phase_h
    ow = (r % QW) * PHASE_STRIDE + phase_w
    row_ok = (r < QH * QW) & (oh < OH) & (ow < OW)
    return n, phase_h, phase_w, tile_in_image, oh, ow, row_ok


@triton.jit
def _tanh(z):
    """tanh in float32 within a few ulps of its value at every magnitude. |z| >= 1/4: from one
    exp of a non-positive argument (no overflow), sign(z) (1 - t) / (1 + t), t = exp(-2 |z|).
    Below, 1 - t would cancel (relative error ~3e-8 / |z|: 4.6e-4 at |z| ~ 3e-5, DESIGN §5
    allows 1e-5 for an output that is small everywhere), so the Taylor series, odd in z:
    z - z^3/3 + 2 z^5/15 - 17 z^7/315 + 62 z^9/2835, whose next term is < 1e-8 of tanh at 1/4.
    Plain tl ops: the interpreter (triton 3.6, 3.9) has no libdevice tanh or expm1."""
    a = tl.abs(z)
    t = tl.exp(-2.0 * a)
    magnitude = (1.0 - t) / (1.0 + t)
    large = tl.where(z < 0, -magnitude, magnitude)
    s = z * z
    series = z + z * s * (-1.0 / 3.0 + s * (2.0 / 15.0 + s * (-17.0 / 315.0
                                                              + s * (62.0 / 2835.0))))
    return tl.where(a < 0.25, series, large)


@triton.jit
def _load_folded_grad(G_ptr, Y_ptr, Alpha_ptr, Beta_ptr, n, oh, ow, c, row_ok, col_ok, C, OH,
                      OW, sgn, sgc, sgh, sgw, syn, syc, syh, syw, FOLD: tl.constexpr,
                      AFFINE: tl.constexpr):
    """A tile of the output gradient at rows (n, oh, ow), 0 outside the map, in float32,
    completed from the stored output y (conv_fused_types.GradFold) so the completed gradient
    is never written. FOLD 1: plus what reaches y through its norm statistics (mean, rstd),
    g + alpha * y + beta, alpha and beta per (n, c) (AFFINE 1) or per c (AFFINE 2) -- the
    elementwise rest of the norm backward. FOLD 2: y is the epilogue's tanh output, whose
    derivative gives g * (1 - y^2) -- the tanh backward."""
    inside = row_ok & (oh >= 0) & (oh < OH) & (ow >= 0) & (ow < OW)
    mask = inside[:, None] & col_ok[None, :]
    g_offs = (n * sgn + oh * sgh + ow * sgw)[:, None] + (c * sgc)[None, :]
    g = tl.load(G_ptr + g_offs, mask=mask, other=0.0).to(tl.float32)
    if FOLD != 0:
        y_offs = (n * syn + oh * syh + ow * syw)[:, None] + (c * syc)[None, :]
        y = tl.load(Y_ptr + y_offs, mask=mask, other=0.0).to(tl.float32)
        if FOLD == 1:
            alpha, beta = _prologue_coefficients(Alpha_ptr, Beta_ptr, n, c, C, mask, col_ok,
                                                 AFFINE)
            g = tl.where(mask, g + alpha * y + beta, 0.0)
        else:
            g = g * (1.0 - y * y)
    return g
