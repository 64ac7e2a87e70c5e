"""The fused convolution's statistics finish: the per-tile (mean, M2, rows) that the forward's
epilogue stores (TilePartials, kernels/conv_fused.py) are Chan-merged per group (an image for
instance norm, the batch for batch norm) into (mean, rstd), the next prologue's scale / shift and
batch norm's running statistics. No backward of its own: the op saves (mean, rstd), and the conv
backward folds their share into the output gradient as it loads it (GradFold).
"""
import triton
import triton.language as tl

from fastp2p.kernels.conv_fused_types import TilePartials
from fastp2p.kernels.norm_act import dense_vector


@triton.jit
def _tile_moments(PartMean_ptr, PartM2_ptr, PartCount_ptr, group, start, end, parts_per_group, c,
                  ok, C, BLOCK_P: tl.constexpr):
    """Tiles start .. start + BLOCK_P - 1 of a group: (rows (BLOCK_P, 1), mean, M2), zeros from
    tile ``end`` on (rows 0: they add nothing)."""
    i = start + tl.arange(0, BLOCK_P).to(tl.int64)
    part_ok = i < end
    part = group * parts_per_group + i
    at = part[:, None] * C + c[None, :]
    mask = part_ok[:, None] & ok[None, :]
    rows = tl.load(PartCount_ptr + part, mask=part_ok, other=0.0)[:, None]
    mean = tl.load(PartMean_ptr + at, mask=mask, other=0.0)
    m2 = tl.load(PartM2_ptr + at, mask=mask, other=0.0)
    return rows, mean, m2


@triton.jit
def _conv_stats_finish_kernel(
    PartMean_ptr, PartM2_ptr, PartCount_ptr,   # (G * P, C) tile moments, (G * P,) row counts
    Gamma_ptr, Beta_ptr,                       # (C,) the norm's affine (AFFINE) or dummies
    Mean_ptr, Rstd_ptr, Scale_ptr, Shift_ptr,  # (G, C) float32 outputs (FINISH) or dummies
    RunMean_ptr, RunVar_ptr,                   # (C,) running stats (UPDATE_RUNNING) or dummies
    ChunkMean_ptr, ChunkM2_ptr, ChunkCount_ptr,  # not FINISH: (G * chunks, C), (G * chunks,)
    C, parts_per_group, chunk_parts, eps, momentum,
    FINISH: tl.constexpr, AFFINE: tl.constexpr, UPDATE_RUNNING: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Merges a group's P = parts_per_group tile moments (an image's for instance norm, all for
    batch norm) into (mean, rstd) and the next prologue's scale = gamma * rstd, shift = beta -
    mean * scale (FINISH); or, not FINISH, chunk program_id(2)'s chunk_parts tiles into one
    (rows, mean, M2) row of the Chunk arrays, which a FINISH launch then merges as its tiles
    (conv_stats_finish splits a group of many tiles so, across programs).

    Two passes over the tiles, BLOCK_P at a time, tree-summed per block (tl.sum). The first sums
    rows * (tile mean - the first tile mean) into a first mean p (the tiles of a constant
    output give exactly their value); the second sums rows * d, d = tile mean - p, which
    corrects p's rounding, and Chan's M2 + rows * d^2 in BLOCK_P lanes (each sums every
    BLOCK_P-th tile; their rounding errors average when the lanes are summed). Merging one
    block after another rounded the mean at the ulp of its distance from the first tile mean,
    and M2, once per block: at batch 64 (the U-Net-256's 128x128 decoder layer, 16384 tiles per
    channel) an fp32 emulation of it put the batch mean up to 1.1e-6 spreads off float64 and
    rstd 3.3e-7 (this: 1.7e-8, float32's own rounding of the mean 1.6e-8, and 1.3e-7, about
    what rstd's formula rounds on its own), enough to move elements across a ReLU kink, as
    norm-act's statistics did (8c409f1). Split, both levels merge so, over fewer blocks each;
    the chunk rows add one float32 rounding of each chunk's mean and M2. Fixed blocks and
    chunks in a fixed order: deterministic. Reads the tile means twice (1/BLOCK_M of the
    output each)."""
    group = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    ok = c < C
    first = tl.program_id(2) * chunk_parts
    end = tl.minimum(first + chunk_parts, parts_per_group)
    pivot = tl.load(PartMean_ptr + (group * parts_per_group + first) * C + c, mask=ok, other=0.0)
    shifted = tl.zeros((BLOCK_C,), tl.float32)  # sum of rows * (tile mean - pivot)
    count = tl.zeros((BLOCK_C,), tl.float32)    # the tiles' rows, in every lane
    for start in range(first, end, BLOCK_P):
        rows, part_mean, _ = _tile_moments(PartMean_ptr, PartM2_ptr, PartCount_ptr, group, start,
                                           end, parts_per_group, c, ok, C, BLOCK_P)
        shifted += tl.sum(rows * (part_mean - pivot[None, :]), axis=0)
        count += tl.sum(rows, axis=0)
    rows_or_1 = tl.maximum(count, 1.0)  # a chunk of empty tiles (a short phase) adds nothing
    center = pivot + shifted / rows_or_1
    deviation = tl.zeros((BLOCK_C,), tl.float32)  # sum of rows * (tile mean - center)
    m2 = tl.zeros((BLOCK_P, BLOCK_C), tl.float32)
    for start in range(first, end, BLOCK_P):
        rows, part_mean, part_m2 = _tile_moments(PartMean_ptr, PartM2_ptr, PartCount_ptr, group,
                                                 start, end, parts_per_group, c, ok, C, BLOCK_P)
        d = part_mean - center[None, :]
        deviation += tl.sum(rows * d, axis=0)
        m2 += part_m2 + rows * d * d
    m2 = tl.maximum(tl.sum(m2, axis=0) - deviation * (deviation / rows_or_1), 0.0)
    mean = center + deviation / rows_or_1
    if not FINISH:
        row = group * tl.num_programs(2) + tl.program_id(2)
        tl.store(ChunkMean_ptr + row * C + c, mean, mask=ok)
        tl.store(ChunkM2_ptr + row * C + c, m2, mask=ok)
        tl.store(ChunkCount_ptr + row + 0 * c, count, mask=c == 0)  # one store per row
    else:
        rstd = 1.0 / tl.sqrt(m2 / count + eps)
        tl.store(Mean_ptr + group * C + c, mean, mask=ok)
        tl.store(Rstd_ptr + group * C + c, rstd, mask=ok)
        scale = rstd
        shift = -mean * rstd
        if AFFINE:
            gamma = tl.load(Gamma_ptr + c, mask=ok, other=1.0).to(tl.float32)
            beta = tl.load(Beta_ptr + c, mask=ok, other=0.0).to(tl.float32)
            scale = gamma * rstd
            shift = beta - mean * scale
        tl.store(Scale_ptr + group * C + c, scale, mask=ok)
        tl.store(Shift_ptr + group * C + c, shift, mask=ok)
        if UPDATE_RUNNING:  # nn.BatchNorm2d's update, with the unbiased variance
            unbiased = m2 / tl.maximum(count - 1.0, 1.0)
            run_mean = tl.load(RunMean_ptr + c, mask=ok, other=0.0).to(tl.float32)
            run_var = tl.load(RunVar_ptr + c, mask=ok, other=0.0).to(tl.float32)
            tl.store(RunMean_ptr + c, (1.0 - momentum) * run_mean + momentum * mean, mask=ok)
            tl.store(RunVar_ptr + c, (1.0 - momentum) * run_var + momentum * unbiased, mask=ok)


# ----------------------------------------------------------------------------- host launchers

# The finish's programs loop over their tiles a block of 64 at a time, each block a dependent
# round of loads: one program per (group, 64 channels) takes 2 * 256 rounds at 16384 tiles. A
# group of SPLIT_CHUNKS or more chunks of CHUNK_TILES tiles (more than 512) is merged in two
# launches, 2 * 4 rounds per chunk, then 2 * ceil(chunks / 64) for the chunk rows; fewer tiles
# take one launch (at most 2 * 8 rounds), saving the second launch.
CHUNK_TILES = 256
SPLIT_CHUNKS = 3
# The chunks' launch narrows its channel blocks (down to 16) until it has this many programs,
# about two per SM of an H100 / H200 (132).
SPLIT_PROGRAMS = 256
# The chunks are the launch's grid axis z, which CUDA caps at 65535: a group of more tiles than
# 65535 chunks hold (about 1.7e7 at CHUNK_TILES; no layer of these networks comes near) takes
# larger chunks instead of a launch that fails.
MAX_CHUNKS = 65535


def finish_chunks(parts_per_group: int, chunk_tiles: int = CHUNK_TILES) -> int:
    """How many chunks of ``chunk_tiles`` tiles conv_stats_finish merges a group of
    ``parts_per_group`` tiles in first: 1 (one launch) below SPLIT_CHUNKS chunks."""
    chunks = triton.cdiv(parts_per_group, chunk_tiles)
    return chunks if chunks >= SPLIT_CHUNKS else 1


def conv_stats_finish(parts: TilePartials, *, per_sample, eps, gamma=None, beta=None,
                      running_mean=None, running_var=None, momentum=0.1):
    """(mean, rstd, scale, shift) of the conv output from its TilePartials: per (N, C) for
    instance norm (per_sample), else (C,) per channel, float32; scale/shift are the next
    prologue's (gamma * rstd, beta - mean * gamma * rstd; gamma = 1, beta = 0 without affine).
    Batch norm's running statistics are updated in place when given (strided ones through
    contiguous copies, copied back).

    A group of many tiles (finish_chunks; batch norm at batch 64: 16384 tiles per channel at the
    U-Net-256's 128x128 layer, one program per 64 channels) is merged in two launches: chunks
    of CHUNK_TILES tiles across programs into one moments row each, then those rows."""
    return conv_stats_finish_in_chunks(
        parts, CHUNK_TILES, per_sample=per_sample, eps=eps, gamma=gamma, beta=beta,
        running_mean=running_mean, running_var=running_var, momentum=momentum)


def conv_stats_finish_in_chunks(parts: TilePartials, chunk_tiles: int, *, per_sample, eps,
                                gamma=None, beta=None, running_mean=None, running_var=None,
                                momentum=0.1):
    """conv_stats_finish with chunks of at least ``chunk_tiles`` tiles, larger where the group
    would need more than MAX_CHUNKS (the contract's launcher has no such argument; tests split
    small groups with it)."""
    N, T, C = parts.a.shape
    groups = N if per_sample else 1
    parts_per_group = N * T // groups
    stats = [parts.a.new_empty((groups, C)) for _ in range(4)]
    block_c = min(64, triton.next_power_of_2(C))
    dummy = parts.a
    means, m2s, counts = parts.a, parts.b, parts.count
    chunk_tiles = max(chunk_tiles, triton.cdiv(parts_per_group, MAX_CHUNKS))
    chunks = finish_chunks(parts_per_group, chunk_tiles)
    if chunks > 1:
        means, m2s = (parts.a.new_empty((groups * chunks, C)) for _ in range(2))
        counts = parts.count.new_empty((groups * chunks,))
        chunk_c = block_c
        while chunk_c > 16 and groups * triton.cdiv(C, chunk_c) * chunks < SPLIT_PROGRAMS:
            chunk_c //= 2
        _conv_stats_finish_kernel[(groups, triton.cdiv(C, chunk_c), chunks)](
            parts.a, parts.b, parts.count, *[dummy] * 8, means, m2s, counts,
            C, parts_per_group, chunk_tiles, 0.0, 0.0, FINISH=False, AFFINE=False,
            UPDATE_RUNNING=False, BLOCK_P=min(64, triton.next_power_of_2(chunk_tiles)),
            BLOCK_C=chunk_c)
        parts_per_group = chunks
    update = running_mean is not None
    running = (dense_vector(running_mean), dense_vector(running_var))
    _conv_stats_finish_kernel[(groups, triton.cdiv(C, block_c), 1)](
        means, m2s, counts,
        dummy if gamma is None else dense_vector(gamma),
        dummy if beta is None else dense_vector(beta),
        *stats, *(running if update else (dummy, dummy)), dummy, dummy, dummy,
        C, parts_per_group, parts_per_group, float(eps), float(momentum or 0.0), FINISH=True,
        AFFINE=gamma is not None, UPDATE_RUNNING=update,
        BLOCK_P=min(64, triton.next_power_of_2(parts_per_group)), BLOCK_C=block_c)
    for given, used in zip((running_mean, running_var), running):
        if used is not given:
            given.copy_(used)
    return tuple(s if per_sample else s.view(C) for s in stats)
