"""Fused norm + activation + dropout + channel-slice write (the U-Net's zero-copy skip concat).

Groups small enough for registers (maps up to 32x32 at batch 1, the small instance-norm maps at
any batch) take one kernel that reads x once, forward and backward. Larger ones: a split
reduction computes fp32 per-channel (batch) or per-(sample, channel) (instance) mean/M2 of x
minus the mean of the group's first tile (exact near a large mean, small near any) with Chan's
merge of per-tile moments (no E[x^2]-E[x]^2), whose last program per channel block merges the
splits in two passes of tree sums (and updates BatchNorm's running stats and
num_batches_tracked), then one
elementwise pass writes ``out[:, c0:c0+C]``. Backward
recomputes x_hat, the activation's derivative and the dropout mask
(counter-based hash, never stored) from x and the saved (mean, rstd): one reduction pass for
sum(g) and sum(g * x_hat), whose last program per channel block adds the partials up into the
group sums and grad_weight / grad_bias (in the parameters' dtype), then one elementwise pass
for grad_x; no PyTorch op runs between them. Strides are passed everywhere, so
channels-last (NHWC) is native and nothing is made contiguous.
"""
import threading

import torch
import triton
import triton.language as tl

from fastp2p.kernels.norm_act_tiles import (_activate_drop_store, _count_batch,
                                            _elementwise_tile, _finish_moments, _finish_sums,
                                            _last_to_arrive, _load_affine,
                                            _load_affine_and_stats, _load_per_group,
                                            _load_pivot,
                                            _merge_moments, _offsets, _recompute_grad_z,
                                            _rng_start, _split_program, _store_partials,
                                            _store_statistics, _tile, _tile_mean_pivot)
from fastp2p.kernels.codes import ACTIVATION_CODES, NORM_CODES
from fastp2p.kernels.dropout_rng import LOW32, dropout_threshold, mix32
from fastp2p.kernels.grid import reduction_splits
from fastp2p.kernels.pdl import launch_options, wait_for_previous_kernel


@triton.jit
def _norm_act_stats_kernel(
    X_ptr,                             # (N, C, H, W) input, any strides
    PartMean_ptr, PartM2_ptr,          # (G, S, C) float32: mean and M2 of x - pivot per split
    Pivot_ptr,                         # (G, C) float32: each group's pivot, for the last program
    Mean_ptr, Rstd_ptr,                # (G, C) float32 outputs
    RunMean_ptr, RunVar_ptr,           # (C,) running stats (batch norm training) or dummies
    Batches_ptr,                       # int64 num_batches_tracked (COUNT_BATCH) or a dummy
    Counter_ptr,                       # (channel blocks,) int32 zeros, left zeroed
    C, HW, W, rows, rows_per_split, num_splits, eps, momentum,
    sn, sc, sh, sw,
    GROUP_IS_SAMPLE: tl.constexpr, UPDATE_RUNNING: tl.constexpr, COUNT_BATCH: tl.constexpr,
    SHARED: tl.constexpr, FINISH_G: tl.constexpr, FINISH_S: tl.constexpr,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Each (group, split)'s moments of x - pivot (``_tile_mean_pivot``: exact near a large
    mean, small near any mean) with Chan's merge of per-tile moments; the last program of
    a channel block (SHARED: more than one per block) merges the splits of every group into
    (mean, rstd) and the running statistics (``_finish_moments``: (FINISH_G, FINISH_S) tiles),
    so no finalize launch follows."""
    wait_for_previous_kernel(PDL)
    group, split, col0, row_begin, row_end = _split_program(rows, rows_per_split, num_splits,
                                                            BLOCK_C)
    channels = col0 + tl.arange(0, BLOCK_C)
    pivot = _tile_mean_pivot(X_ptr, group, col0, C, HW, W, rows, sn, sc, sh, sw,
                             GROUP_IS_SAMPLE, BLOCK_HW, BLOCK_C)
    if split == 0:
        tl.store(Pivot_ptr + group * C + channels, pivot, mask=channels < C)
    pivot = pivot[None, :]
    mean = tl.zeros((BLOCK_C,), tl.float32)  # of x - pivot
    m2 = tl.zeros((BLOCK_C,), tl.float32)
    count = tl.zeros((BLOCK_C,), tl.float32)  # the same in every lane; a vector keeps types simple
    for start in range(0, rows_per_split, BLOCK_HW):
        n, hw, c, row_ok, col_ok, offs = _tile(row_begin + start, col0, row_end, group, C, HW, W,
                                               sn, sc, sh, sw, GROUP_IS_SAMPLE, BLOCK_HW, BLOCK_C)
        mask = row_ok[:, None] & col_ok[None, :]
        x = tl.load(X_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        shifted = tl.where(mask, x - pivot, 0.0)
        tile_count = tl.sum(row_ok.to(tl.float32), axis=0)
        tile_mean = tl.sum(shifted, axis=0) / tl.maximum(tile_count, 1.0)
        centered = tl.where(mask, shifted - tile_mean[None, :], 0.0)
        tile_m2 = tl.sum(centered * centered, axis=0)
        mean, m2, count = _merge_moments(mean, m2, count, tile_mean, tile_m2, tile_count)
    _store_partials(PartMean_ptr, PartM2_ptr, mean, m2, group, split, num_splits, col0, C,
                    BLOCK_C)
    if _last_to_arrive(Counter_ptr + tl.program_id(1), tl.num_programs(0), SHARED):
        num_groups = tl.num_programs(0) // num_splits
        for group0 in range(0, num_groups, FINISH_G):
            _finish_moments(PartMean_ptr, PartM2_ptr, Pivot_ptr, Mean_ptr, Rstd_ptr,
                            RunMean_ptr, RunVar_ptr, group0, num_groups, col0, C, rows,
                            rows_per_split, num_splits, eps, momentum, UPDATE_RUNNING,
                            FINISH_G, FINISH_S, BLOCK_C)
        _count_batch(Batches_ptr, tl.program_id(1) == 0, COUNT_BATCH)


@triton.jit(do_not_specialize=["Seed", "Offset"])
def _norm_act_fwd_one_pass_kernel(
    X_ptr, Y_ptr,                      # input; destination offset to channel c0
    Weight_ptr, Bias_ptr,              # (C,) affine or dummies
    Mean_ptr, Rstd_ptr,                # (G, C) float32 outputs
    RunMean_ptr, RunVar_ptr,           # (C,) running stats (batch norm training) or dummies
    Batches_ptr,                       # int64 num_batches_tracked (COUNT_BATCH) or a dummy
    Seed, Offset,
    C, HW, W, rows, eps, momentum,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    slope, threshold, keep_scale,
    GROUP_IS_SAMPLE: tl.constexpr, UPDATE_RUNNING: tl.constexpr, COUNT_BATCH: tl.constexpr,
    AFFINE: tl.constexpr,
    ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr, RNG_IN_MEMORY: tl.constexpr,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """A whole group (BLOCK_HW >= rows) in registers: statistics of x - pivot (``_load_pivot``)
    from one read, then the output. One launch instead of three for the small maps (and batch
    1). The shifted values' mean rounds at the ulp of their sum (thousands of values a spread
    or more from 0: 2e-6 spreads at 2048 rows through the interpreter); the mean of the
    residuals about it, small numbers summed, corrects it to float32's rounding."""
    wait_for_previous_kernel(PDL)
    group = tl.program_id(0).to(tl.int64)
    col0 = tl.program_id(1).to(tl.int64) * BLOCK_C
    n, hw, c, row_ok, col_ok, x_offs = _tile(0, col0, rows, group, C, HW, W, sxn, sxc, sxh, sxw,
                                             GROUP_IS_SAMPLE, BLOCK_HW, BLOCK_C)
    mask = row_ok[:, None] & col_ok[None, :]
    x = tl.load(X_ptr + x_offs, mask=mask, other=0.0).to(tl.float32)
    pivot = _load_pivot(X_ptr, group, c, col_ok, sxn, sxc, GROUP_IS_SAMPLE)
    shifted = tl.where(mask, x - pivot[None, :], 0.0)
    count = tl.zeros((BLOCK_C,), tl.float32) + rows
    shifted_mean = tl.sum(shifted, axis=0) / count
    residual = tl.where(mask, shifted - shifted_mean[None, :], 0.0)
    correction = tl.sum(residual, axis=0) / count
    centered = tl.where(mask, residual - correction[None, :], 0.0)
    mean = pivot + (shifted_mean + correction)
    m2 = tl.sum(centered * centered, axis=0)
    _store_statistics(Mean_ptr, Rstd_ptr, RunMean_ptr, RunVar_ptr, group, c, col_ok, C, mean,
                      m2, count, eps, momentum, UPDATE_RUNNING)
    _count_batch(Batches_ptr, (tl.program_id(0) == 0) & (tl.program_id(1) == 0), COUNT_BATCH)
    rstd = 1.0 / tl.sqrt(m2 / count + eps)
    y = centered * rstd[None, :]
    if AFFINE:
        weight, bias = _load_affine(Weight_ptr, Bias_ptr, c, col_ok)
        y = y * weight + bias
    _activate_drop_store(Y_ptr, y, n, hw, c, mask, C, HW, W, syn, syc, syh, syw, Seed, Offset,
                         slope, threshold, keep_scale, ACTIVATION, DROPOUT, RNG_IN_MEMORY)


@triton.jit(do_not_specialize=["Seed", "Offset"])
def _norm_act_fwd_kernel(
    X_ptr,                 # (N, C, H, W) input
    Y_ptr,                 # destination already offset to channel c0: (N, C, H, W) view
    Weight_ptr, Bias_ptr,  # (C,) affine or dummies
    Mean_ptr, Rstd_ptr,    # (N, C) instance | (C,) batch | dummies for none
    Seed, Offset,          # ints, or int64 device scalars when RNG_IN_MEMORY
    C, HW, W, rows,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    slope, threshold, keep_scale,
    NORM: tl.constexpr, AFFINE: tl.constexpr, ACTIVATION: tl.constexpr,
    DROPOUT: tl.constexpr, RNG_IN_MEMORY: tl.constexpr,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    n, hw, c, col_ok, mask, x_offs = _elementwise_tile(rows, C, HW, W, sxn, sxc, sxh, sxw,
                                                       BLOCK_HW, BLOCK_C)
    x = tl.load(X_ptr + x_offs, mask=mask, other=0.0).to(tl.float32)
    weight, bias, mean, rstd = _load_affine_and_stats(Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr,
                                                      n, c, C, mask, col_ok, NORM, AFFINE)
    y = (x - mean) * rstd * weight + bias
    _activate_drop_store(Y_ptr, y, n, hw, c, mask, C, HW, W, syn, syc, syh, syw, Seed, Offset,
                         slope, threshold, keep_scale, ACTIVATION, DROPOUT, RNG_IN_MEMORY)


@triton.jit(do_not_specialize=["Seed", "Offset"])
def _norm_act_bwd_reduce_kernel(
    X_ptr, G_ptr,                      # input and grad of the output slice
    Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr,
    PartSumG_ptr, PartSumGXhat_ptr,    # (G, S, C) float32 partial sums
    SumG_ptr, SumGXhat_ptr,            # (G, C) float32 group sums (BATCH_STATS) or dummies
    GradWeight_ptr, GradBias_ptr,      # (C,) in the parameters' dtype (AFFINE) or dummies
    Counter_ptr,                       # (channel blocks,) int32 zeros, left zeroed
    Seed, Offset,
    C, HW, W, rows, rows_per_split, num_splits,
    sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw,
    slope, threshold, keep_scale,
    NORM: tl.constexpr, BATCH_STATS: tl.constexpr, AFFINE: tl.constexpr,
    ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr, RNG_IN_MEMORY: tl.constexpr,
    SHARED: tl.constexpr, FINISH_G: tl.constexpr, FINISH_S: tl.constexpr,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Partial sums of g and g * x_hat per (group, split); the last program of a channel block
    (SHARED: more than one per block) adds them up in a fixed order into the group sums and
    grad_weight / grad_bias, so no other launch reduces them."""
    wait_for_previous_kernel(PDL)
    group, split, col0, row_begin, row_end = _split_program(rows, rows_per_split, num_splits,
                                                            BLOCK_C)
    seed_mixed, offset = _rng_start(Seed, Offset, RNG_IN_MEMORY)
    sum_g = tl.zeros((BLOCK_C,), tl.float32)
    sum_g_xhat = tl.zeros((BLOCK_C,), tl.float32)
    for start in range(0, rows_per_split, BLOCK_HW):
        n, hw, c, row_ok, col_ok, x_offs = _tile(row_begin + start, col0, row_end, group, C, HW,
                                                 W, sxn, sxc, sxh, sxw, NORM == 1, BLOCK_HW,
                                                 BLOCK_C)
        mask = row_ok[:, None] & col_ok[None, :]
        weight, rstd, x_hat, g = _recompute_grad_z(
            X_ptr, G_ptr, Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr, n, hw, c, x_offs, mask,
            col_ok, C, HW, W, sgn, sgc, sgh, sgw, seed_mixed, offset, slope, threshold,
            keep_scale, NORM, AFFINE, ACTIVATION, DROPOUT)
        sum_g += tl.sum(g, axis=0)
        sum_g_xhat += tl.sum(g * x_hat, axis=0)
    _store_partials(PartSumG_ptr, PartSumGXhat_ptr, sum_g, sum_g_xhat, group, split, num_splits,
                    col0, C, BLOCK_C)
    if _last_to_arrive(Counter_ptr + tl.program_id(1), tl.num_programs(0), SHARED):
        _finish_sums(PartSumG_ptr, PartSumGXhat_ptr, SumG_ptr, SumGXhat_ptr, GradBias_ptr,
                     GradWeight_ptr, col0, C, tl.num_programs(0) // num_splits, num_splits,
                     BATCH_STATS, AFFINE, FINISH_G, FINISH_S, BLOCK_C)


@triton.jit(do_not_specialize=["Seed", "Offset"])
def _norm_act_bwd_kernel(
    X_ptr, G_ptr, DX_ptr,              # input, grad of the output slice, grad of the input
    Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr,
    SumG_ptr, SumGXhat_ptr,            # (G, C) float32 group sums (instance: per sample)
    Seed, Offset,
    C, HW, W, rows, inv_group_count,
    sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, sdn, sdc, sdh, sdw,
    slope, threshold, keep_scale,
    NORM: tl.constexpr, BATCH_STATS: tl.constexpr, AFFINE: tl.constexpr,
    ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr, RNG_IN_MEMORY: tl.constexpr,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    wait_for_previous_kernel(PDL)
    n, hw, c, col_ok, mask, x_offs = _elementwise_tile(rows, C, HW, W, sxn, sxc, sxh, sxw,
                                                       BLOCK_HW, BLOCK_C)
    seed_mixed, offset = _rng_start(Seed, Offset, RNG_IN_MEMORY)
    weight, rstd, x_hat, g = _recompute_grad_z(
        X_ptr, G_ptr, Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr, n, hw, c, x_offs, mask, col_ok,
        C, HW, W, sgn, sgc, sgh, sgw, seed_mixed, offset, slope, threshold, keep_scale, NORM,
        AFFINE, ACTIVATION, DROPOUT)
    dx = g * weight * rstd
    if BATCH_STATS:
        # Instance norm: sums per (n, c); batch norm in training: per c. Both stored (G, C).
        sum_g = _load_per_group(SumG_ptr, n, c, C, mask, col_ok, 0.0, NORM == 1)
        sum_g_xhat = _load_per_group(SumGXhat_ptr, n, c, C, mask, col_ok, 0.0, NORM == 1)
        dx -= weight * rstd * inv_group_count * (sum_g + x_hat * sum_g_xhat)
    dx_offs = _offsets(n, hw, c, W, sdn, sdc, sdh, sdw)
    tl.store(DX_ptr + dx_offs, dx.to(DX_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["Seed", "Offset"])
def _norm_act_bwd_one_pass_kernel(
    X_ptr, G_ptr, DX_ptr,              # input, grad of the output slice, grad of the input
    Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr,
    PartSumG_ptr, PartSumGXhat_ptr,    # (G, C) float32 per-group sums (AFFINE) or dummies
    GradWeight_ptr, GradBias_ptr,      # (C,) in the parameters' dtype (AFFINE) or dummies
    Counter_ptr,                       # (channel blocks,) int32 zeros, left zeroed
    Seed, Offset,
    C, HW, W, rows,
    sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, sdn, sdc, sdh, sdw,
    slope, threshold, keep_scale,
    NORM: tl.constexpr, BATCH_STATS: tl.constexpr, AFFINE: tl.constexpr,
    ACTIVATION: tl.constexpr, DROPOUT: tl.constexpr, RNG_IN_MEMORY: tl.constexpr,
    SHARED: tl.constexpr, FINISH_G: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """The whole group in registers: the sums and grad_x from one read of x and of the grad;
    grad_weight / grad_bias summed over the groups by the last program of each channel block
    (SHARED: more than one group)."""
    wait_for_previous_kernel(PDL)
    group = tl.program_id(0).to(tl.int64)
    col0 = tl.program_id(1).to(tl.int64) * BLOCK_C
    n, hw, c, row_ok, col_ok, x_offs = _tile(0, col0, rows, group, C, HW, W, sxn, sxc, sxh, sxw,
                                             NORM == 1, BLOCK_HW, BLOCK_C)
    mask = row_ok[:, None] & col_ok[None, :]
    seed_mixed, offset = _rng_start(Seed, Offset, RNG_IN_MEMORY)
    weight, rstd, x_hat, g = _recompute_grad_z(
        X_ptr, G_ptr, Weight_ptr, Bias_ptr, Mean_ptr, Rstd_ptr, n, hw, c, x_offs, mask, col_ok,
        C, HW, W, sgn, sgc, sgh, sgw, seed_mixed, offset, slope, threshold, keep_scale, NORM,
        AFFINE, ACTIVATION, DROPOUT)
    x_hat = tl.where(mask, x_hat, 0.0)  # g is 0 there too: padding adds nothing to the sums
    sum_g = tl.sum(g, axis=0)
    sum_g_xhat = tl.sum(g * x_hat, axis=0)
    dx = g * weight * rstd
    if BATCH_STATS:
        dx -= weight * rstd / rows * (sum_g[None, :] + x_hat * sum_g_xhat[None, :])
    dx_offs = _offsets(n, hw, c, W, sdn, sdc, sdh, sdw)
    tl.store(DX_ptr + dx_offs, dx.to(DX_ptr.dtype.element_ty), mask=mask)
    if AFFINE:
        _store_partials(PartSumG_ptr, PartSumGXhat_ptr, sum_g, sum_g_xhat, group, 0, 1, col0, C,
                        BLOCK_C)
        if _last_to_arrive(Counter_ptr + tl.program_id(1), tl.num_programs(0), SHARED):
            _finish_sums(PartSumG_ptr, PartSumGXhat_ptr, PartSumG_ptr, PartSumGXhat_ptr,
                         GradBias_ptr, GradWeight_ptr, col0, C, tl.num_programs(0), 1, False,
                         True, FINISH_G, 1, BLOCK_C)


# ----------------------------------------------------------------------------- host launchers

def _blocks(channels: int, interpreted: bool):
    """Tile sizes: channel blocks along the contiguous NHWC axis; bigger tiles in the
    interpreter, where each program costs more than each element."""
    block_c = min(triton.next_power_of_2(channels), 64)
    block_hw = max(4096 // block_c, 16) if interpreted else max(2048 // block_c, 16)
    return block_hw, block_c


# Programs a statistics reduction aims for (None: 1 in the interpreter, where programs run one
# after another, else 4 per SM of the GPU). Tests set it to exercise the split merge.
REDUCTION_PROGRAMS = None


def _splits(x: torch.Tensor, rows: int, groups: int, channel_blocks: int, block_hw: int):
    """(splits, rows_per_split) of a long reduction, so that enough programs run at once
    (grid.reduction_splits); rows_per_split is a multiple of the tile height."""
    return reduction_splits(rows, block_hw, groups * channel_blocks, x.device,
                            override=REDUCTION_PROGRAMS, interpreted=_interpreted(x))


# Largest group held in registers by the one-pass forward (rows x channels of one program);
# larger groups take the split reduction. Tests set it to 0 to exercise the split path.
ONE_PASS_MAX_ELEMENTS = 8192


def _one_pass_block(rows: int, channels: int):
    """(BLOCK_HW, BLOCK_C, num_warps) of the one-pass kernels, or None when the group is too
    large."""
    block_rows, all_channels = triton.next_power_of_2(rows), triton.next_power_of_2(channels)
    if block_rows * min(4, all_channels) > ONE_PASS_MAX_ELEMENTS:
        return None
    block_c = min(all_channels, 64, ONE_PASS_MAX_ELEMENTS // block_rows)
    return block_rows, block_c, 8 if block_rows * block_c >= 4096 else 4


def _rng_args(seed, offset):
    """Seed and offset as kernel arguments: device tensors stay pointers (CUDA-graph replay
    reads the current values), ints are reduced to 32 bits here."""
    if isinstance(seed, torch.Tensor):  # then offset is one too (checked by fastp2p.ops)
        return seed, offset, True
    return mix32(int(seed) & LOW32), int(offset) & LOW32, False


def _interpreted(x: torch.Tensor) -> bool:
    return x.device.type == "cpu"


def _dropout_args(dropout_p: float):
    if dropout_p > 0:
        return dropout_threshold(dropout_p), 1.0 / (1.0 - dropout_p)
    return 0, 1.0


def dense_vector(vector):
    """The kernels index per-channel vectors as dense arrays: a strided one (a user's view, e.g.
    ``w[::2]``) goes through a contiguous copy."""
    return vector if vector is None or vector.is_contiguous() else vector.contiguous()


def norm_act_fwd(x, weight, bias, running_mean, running_var, out, out_channel_offset, *, norm,
                 training, momentum, eps, activation, slope, dropout_p, seed, offset,
                 num_batches_tracked=None):
    """Write dropout(act(norm(x) * weight + bias)) into out[:, c0:c0+C]; return (mean, rstd).
    A batch norm in training with running statistics has the kernel that updates them add 1 to
    ``num_batches_tracked`` too (no launch of its own). Strided per-channel vectors go through
    contiguous copies (running statistics updated in the copies are copied back).

    The contract (shapes, dtypes, batch-norm running-stat update) is
    ``fastp2p.ops.backends.contract.Backend.norm_act_fwd``; inputs are validated by fastp2p.ops
    before they reach a backend.
    """
    running = (dense_vector(running_mean), dense_vector(running_var))
    result = _norm_act_fwd_dense(
        x, dense_vector(weight), dense_vector(bias), *running, out, out_channel_offset, norm=norm,
        training=training, momentum=momentum, eps=eps, activation=activation, slope=slope,
        dropout_p=dropout_p, seed=seed, offset=offset, num_batches_tracked=num_batches_tracked)
    for given, used in zip((running_mean, running_var), running):
        if used is not given:
            given.copy_(used)
    return result


def _norm_act_fwd_dense(x, weight, bias, running_mean, running_var, out, out_channel_offset, *,
                        norm, training, momentum, eps, activation, slope, dropout_p, seed,
                        offset, num_batches_tracked=None):
    """``norm_act_fwd`` with contiguous per-channel vectors."""
    N, C, H, W = x.shape
    HW, interpreted = H * W, _interpreted(x)
    block_hw, block_c = _blocks(C, interpreted)
    channel_blocks = triton.cdiv(C, block_c)
    affine = weight is not None
    batch_stats = norm == "instance" or (norm == "batch" and (training or running_mean is None))
    seed_arg, offset_arg, rng_in_memory = _rng_args(seed, offset)
    threshold, keep_scale = _dropout_args(dropout_p)
    y = out.narrow(1, out_channel_offset, C)
    affine_args = (weight if affine else x, bias if affine else x)  # x: a dummy pointer
    update = norm == "batch" and training and running_mean is not None
    count_batch = update and num_batches_tracked is not None
    batches = num_batches_tracked if count_batch else x  # x: a dummy pointer
    flags = dict(AFFINE=affine, ACTIVATION=ACTIVATION_CODES[activation], DROPOUT=dropout_p > 0,
                 RNG_IN_MEMORY=rng_in_memory)
    pdl = launch_options(x)
    groups, rows = (N, HW) if norm == "instance" else (1, N * HW)
    if batch_stats:
        mean = torch.empty(groups, C, device=x.device, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        running = (running_mean, running_var) if update else (mean, rstd)  # else dummies
        one_pass = _one_pass_block(rows, C)
        if one_pass:
            block_rows, block_c1, num_warps = one_pass
            _norm_act_fwd_one_pass_kernel[(groups, triton.cdiv(C, block_c1))](
                x, y, *affine_args, mean, rstd, *running, batches,
                seed_arg, offset_arg, C, HW, W, rows, float(eps), float(momentum or 0.0),
                *x.stride(), *y.stride(), float(slope), threshold, keep_scale,
                GROUP_IS_SAMPLE=norm == "instance", UPDATE_RUNNING=update,
                COUNT_BATCH=count_batch,
                BLOCK_HW=block_rows, BLOCK_C=block_c1, num_warps=num_warps, **flags, **pdl)
            return (mean.view(C), rstd.view(C)) if norm == "batch" else (mean, rstd)
        splits, rows_per_split = _splits(x, rows, groups, channel_blocks, block_hw)
        part_mean = torch.empty(groups, splits, C, device=x.device, dtype=torch.float32)
        part_m2 = torch.empty_like(part_mean)
        shared = groups * splits > 1
        finish_g, finish_s = _finish_tile(groups, splits, block_c)
        _norm_act_stats_kernel[(groups * splits, channel_blocks)](
            x, part_mean, part_m2, torch.empty_like(mean), mean, rstd, *running, batches,
            _counters(x.device, channel_blocks) if shared else x,
            C, HW, W, rows, rows_per_split, splits, float(eps), float(momentum or 0.0),
            *x.stride(), GROUP_IS_SAMPLE=norm == "instance", UPDATE_RUNNING=update,
            COUNT_BATCH=count_batch, SHARED=shared, FINISH_G=finish_g, FINISH_S=finish_s,
            BLOCK_HW=block_hw, BLOCK_C=block_c, **pdl)
        if norm == "batch":
            mean, rstd = mean.view(C), rstd.view(C)
    elif norm == "none":
        mean, rstd = x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32)
    else:
        mean = running_mean.float()
        rstd = torch.rsqrt(running_var.float() + eps)
    grid = (triton.cdiv(N * HW, block_hw), channel_blocks)
    _norm_act_fwd_kernel[grid](
        x, y, *affine_args,
        mean if norm != "none" else x, rstd if norm != "none" else x,
        seed_arg, offset_arg, C, HW, W, N * HW, *x.stride(), *y.stride(),
        float(slope), threshold, keep_scale,
        NORM=NORM_CODES[norm], BLOCK_HW=block_hw, BLOCK_C=block_c, **flags, **pdl)
    return mean, rstd


# Arrival counters of the statistics and backward kernels' last-program reductions: int32 zeros
# that every kernel leaves zeroed. Each call takes the next slots of a per-device ring, so
# kernels that run at the same time on different streams (up to the ring's length in channel
# blocks) never share a counter; a CUDA graph keeps the slots it captured, which stay valid
# since every user resets its own.
_COUNTER_RING = 1 << 16
_counter_rings: dict = {}
_counter_lock = threading.Lock()  # two threads on one device must not take the same slots


def _counters(device: torch.device, count: int) -> torch.Tensor:
    """``count`` zeroed int32 arrival counters on ``device`` (no launch after the first call)."""
    with _counter_lock:
        ring, next_slot = _counter_rings.get(device, (None, 0))
        if ring is None:
            ring = _new_counter_ring(device)
        if next_slot + count > _COUNTER_RING:
            next_slot = 0
        _counter_rings[device] = (ring, next_slot + count)
    return ring[next_slot:next_slot + count]


def _new_counter_ring(device: torch.device) -> torch.Tensor:
    """The ring's zeros, visible to every stream before any kernel uses a slot: its fill is
    one launch on the current stream, and kernels on other streams (the engine's side stream)
    would not wait for it. Inside a CUDA-graph capture the fill would only be recorded."""
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("fastp2p's first norm-act kernel with batch statistics on "
                           f"{device} ran inside a CUDA-graph capture; run one eager forward "
                           "and backward first (Pix2PixEngine and fastp2p.graphed warm up so)")
    ring = torch.zeros(_COUNTER_RING, device=device, dtype=torch.int32)
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()  # once per process and device
    return ring


# Most partials one load of a last-program reduction covers (a tile of groups x splits x
# channels): a short chain of dependent loads without raising the kernels' register use much.
_FINISH_TILE = 2048


def _finish_tile(groups: int, splits: int, block_c: int):
    """(FINISH_G, FINISH_S): groups and splits per load of the last program's reduction."""
    finish_s = min(triton.next_power_of_2(splits), max(_FINISH_TILE // block_c, 1))
    finish_g = min(triton.next_power_of_2(groups), max(_FINISH_TILE // (finish_s * block_c), 1))
    return finish_g, finish_s


def norm_act_bwd(grad_out_slice, x, weight, bias, mean, rstd, *, norm, activation, slope,
                 dropout_p, seed, offset, training=True):
    """(grad_x, grad_weight, grad_bias) of norm_act_fwd, given the (mean, rstd) it returned.

    ``training``: whether batch norm normalized with the batch's statistics (then grad_x flows
    through them) or with the running ones (eval: they are constants): (C,)-shaped stats alone
    cannot tell the two apart, hence this keyword (default: batch stats).
    """
    weight, bias = dense_vector(weight), dense_vector(bias)
    N, C, H, W = x.shape
    HW, interpreted = H * W, _interpreted(x)
    block_hw, block_c = _blocks(C, interpreted)
    channel_blocks = triton.cdiv(C, block_c)
    affine = weight is not None
    norm_code = NORM_CODES[norm]
    batch_stats = norm == "instance" or (norm == "batch" and training)
    seed_arg, offset_arg, rng_in_memory = _rng_args(seed, offset)
    threshold, keep_scale = _dropout_args(dropout_p)
    dummy = x
    common = dict(NORM=norm_code, AFFINE=affine, ACTIVATION=ACTIVATION_CODES[activation],
                  DROPOUT=dropout_p > 0, RNG_IN_MEMORY=rng_in_memory, BLOCK_HW=block_hw,
                  BLOCK_C=block_c, **launch_options(x))
    stats = (mean if norm != "none" else dummy, rstd if norm != "none" else dummy)
    affine_args = (weight if affine else dummy, bias if affine else dummy)
    groups, rows = (N, HW) if norm == "instance" else (1, N * HW)
    grad_x = torch.empty_like(x)
    # grad_weight / grad_bias are written by the kernels in the parameters' dtype
    grad_weight, grad_bias = ((torch.empty_like(weight), torch.empty_like(bias)) if affine
                              else (None, None))
    grad_params = (grad_weight, grad_bias) if affine else (dummy, dummy)
    one_pass = _one_pass_block(rows, C)
    if one_pass:
        block_rows, block_c1, num_warps = one_pass
        blocks = triton.cdiv(C, block_c1)
        sums = [torch.empty(groups, C, device=x.device, dtype=torch.float32) if affine else dummy
                for _ in range(2)]
        _norm_act_bwd_one_pass_kernel[(groups, blocks)](
            x, grad_out_slice, grad_x, *affine_args, *stats, *sums, *grad_params,
            _counters(x.device, blocks) if affine and groups > 1 else dummy,
            seed_arg, offset_arg, C, HW, W, rows, *x.stride(), *grad_out_slice.stride(),
            *grad_x.stride(), float(slope), threshold, keep_scale, BATCH_STATS=batch_stats,
            SHARED=groups > 1, FINISH_G=_finish_tile(groups, 1, block_c1)[0],
            **dict(common, BLOCK_HW=block_rows, BLOCK_C=block_c1),
            num_warps=num_warps)
        return grad_x, grad_weight, grad_bias
    sum_g = sum_g_xhat = dummy
    if batch_stats or affine:
        splits, rows_per_split = _splits(x, rows, groups, channel_blocks, block_hw)
        part_g = torch.empty(groups, splits, C, device=x.device, dtype=torch.float32)
        part_g_xhat = torch.empty_like(part_g)
        if batch_stats:
            sum_g = torch.empty(groups, C, device=x.device, dtype=torch.float32)
            sum_g_xhat = torch.empty_like(sum_g)
        shared = groups * splits > 1
        finish_g, finish_s = _finish_tile(groups, splits, block_c)
        _norm_act_bwd_reduce_kernel[(groups * splits, channel_blocks)](
            x, grad_out_slice, *affine_args, *stats, part_g, part_g_xhat, sum_g, sum_g_xhat,
            *grad_params, _counters(x.device, channel_blocks) if shared else dummy,
            seed_arg, offset_arg, C, HW, W, rows, rows_per_split, splits, *x.stride(),
            *grad_out_slice.stride(), float(slope), threshold, keep_scale,
            BATCH_STATS=batch_stats, SHARED=shared, FINISH_G=finish_g, FINISH_S=finish_s,
            **common)
    grid = (triton.cdiv(N * HW, block_hw), channel_blocks)
    _norm_act_bwd_kernel[grid](
        x, grad_out_slice, grad_x, *affine_args, *stats, sum_g, sum_g_xhat, seed_arg, offset_arg,
        C, HW, W, N * HW, 1.0 / rows, *x.stride(), *grad_out_slice.stride(),
        *grad_x.stride(), float(slope), threshold, keep_scale, BATCH_STATS=batch_stats, **common)
    return grad_x, grad_weight, grad_bias
