"""The fused conv's finished statistics (conv_stats_finish) are as accurate as float32 allows
at the tile counts of a batch-64 U-Net-256 on a GPU, through the interpreter.

Why so tight: the next layer's prologue and the backward recompute z = x * scale + shift from
(mean, rstd), and an element whose z moves across the ReLU kink takes the other branch of the
gradient; norm-act's statistics 1.3e-6 spreads off flipped 6 of 67M elements at batch 64 on an
H200 and put grad_x 2.55e-4 off float64 against DESIGN §5's 1e-5 (8c409f1). The largest
merge is the 128x128 decoder layer's (a transposed conv: 4 phases x 64 tiles of BLOCK_M = 64
rows per image, the tiles float32 gets on a GPU; the finish's own blocks do not depend on the
device): 16384 tiles per channel for batch norm, 256 per image for instance norm.

The tile moments here are those of a float64 output rounded to float32, and the reference is
their exact merge in float64, so only the finish is measured. Its old merge (one Chan merge per
64 tiles, one after another, each rounding the mean at the ulp of its distance from the first
tile mean) put the mean up to 5.6e-7 spreads off on an output with a vertical gradient (the
group's first tile 1.7 spreads from the mean; 1.1e-6 in an fp32 emulation with a GPU's tree
sums at 64 channels); now at most 1.2e-7 (the interpreter sums each block in sequence; the
emulation 1.7e-8, float32's rounding of the mean 1.6e-8). rstd is bounded, not told apart:
2.7e-7 old, 2.2e-7 now in the interpreter (its formula alone rounds up to 1.5e-7; emulated
3.3e-7 old, 1.3e-7 now).

Batch norm's 16384 tiles are merged in chunks (conv_stats_finish's split) and must meet the
same bounds: the default 64 chunks of 256 tiles, and 6 of 3000 (ending inside a block of 64,
the last one short: a dropped chunk or a wrong count is off by 5e-5 spreads or more); so must
3 chunks of 16384 tiles at batch 192, where a chunk merged block after block as the old kernel
merged is off as it was (2.8e-7 spreads; 1.3e-7 at 4096-tile chunks, within the bound: the
error grows with the blocks a merge takes one after another). Instance norm's 256 tiles per
image take one launch by default; in chunks of 64 they are split too.
"""
import functools

import pytest
import torch

from helpers.triton_interpreter import KERNELS

pytest.importorskip("triton")
from fastp2p.kernels.conv_fused import TilePartials, gemm_blocks  # noqa: E402
from fastp2p.kernels.conv_stats_finish import (CHUNK_TILES,  # noqa: E402
                                               conv_stats_finish_in_chunks, finish_chunks)

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]

BATCH, CHANNELS, PHASES, TILES_PER_PHASE, BLOCK_M = 64, 16, 4, 64, 64
# Largest error of a mean in spreads of its group (|mean - mean64| * rstd64), and of rstd
# (relative): a few float32 roundings. float32's own rounding of the mean is up to 6e-8
# spreads here (the i.i.d. output's mean is one spread from 0), rstd's formula (m2 / n + eps,
# sqrt, reciprocal) rounds up to 1.5e-7.
MEAN_BOUND = 2e-7
RSTD_BOUND = 3e-7


@functools.lru_cache(maxsize=2)
def _tile_moments(gradient: float, batch: int = BATCH):
    """TilePartials (N, T, C) of an output y = 0.5 + gradient * (its row, -1 at the top to 1 at
    the bottom) + N(0, 0.5^2) with the U-Net layer's tiles: a tile is one output row of one
    phase (64 pixels), tile t of a phase sits at row t of the 64. Moments in float64, stored
    float32 as the epilogue stores them; BATCH images at a time."""
    gen = torch.Generator().manual_seed(0)
    row = torch.linspace(-1, 1, TILES_PER_PHASE, dtype=torch.float64).repeat(PHASES)
    means, m2s = [], []
    for _ in range(0, batch, BATCH):
        y = 0.5 + gradient * row.view(1, 1, -1, 1) + 0.5 * torch.randn(
            BATCH, CHANNELS, PHASES * TILES_PER_PHASE, BLOCK_M, generator=gen,
            dtype=torch.float64)
        means.append(y.mean(-1))
        m2s.append(((y - means[-1][..., None]) ** 2).sum(-1))
    count = torch.full((batch, PHASES * TILES_PER_PHASE), float(BLOCK_M))
    return TilePartials(*(torch.cat(t).transpose(1, 2).float().contiguous() for t in (means, m2s)),
                        count)


def _exact_merge(parts: TilePartials, per_sample: bool, eps: float):
    """(mean, rstd) of the float32 tile moments merged in float64, (groups, C)."""
    a, b = parts.a.double(), parts.b.double()
    n = parts.count.double()[..., None]
    dims = (1,) if per_sample else (0, 1)
    count = n.expand_as(a).sum(dims)
    mean = (n * a).sum(dims) / count
    spread = a - (mean[:, None] if per_sample else mean)
    var = (b + n * spread ** 2).sum(dims) / count
    return mean.view(-1, a.shape[2]), torch.rsqrt(var + eps).view(-1, a.shape[2])


# (norm, batch, tiles per chunk, chunks per group (1: one launch), the output's vertical
# gradient): the defaults at both outputs, the other splits at the one that tells them apart
CASES = [(norm, BATCH, chunk_tiles, chunks, gradient) for gradient in (0.0, 3.0)
         for norm, chunk_tiles, chunks in (("batch", CHUNK_TILES, 64), ("batch", 16384, 1),
                                           ("instance", CHUNK_TILES, 1))] + [
    ("batch", BATCH, 3000, 6, 3.0), ("batch", 192, 16384, 3, 3.0), ("instance", BATCH, 64, 4, 3.0)]


@pytest.mark.parametrize("norm, batch, chunk_tiles, chunks, gradient", CASES, ids=[
    f"{c[0]}-norm-batch-{c[1]}-{c[3]}-chunks-{'vertical-gradient' if c[4] else 'iid'}"
    for c in CASES])
def test_finished_statistics_within_float32_rounding(norm, batch, chunk_tiles, chunks, gradient):
    # the layer's tiles (64x64 pixels per phase, 64 channels in and out) on a GPU in float32
    assert gemm_blocks(64 * 64, 64, 64, torch.float32, torch.device("cuda"))[0] == BLOCK_M
    parts = _tile_moments(gradient, batch)
    per_sample = norm == "instance"
    tiles = PHASES * TILES_PER_PHASE * (1 if per_sample else batch)
    assert finish_chunks(tiles, chunk_tiles) == chunks
    mean, rstd, _, _ = conv_stats_finish_in_chunks(parts, chunk_tiles, per_sample=per_sample,
                                                   eps=1e-5)
    mean64, rstd64 = _exact_merge(parts, per_sample, 1e-5)
    mean_error = ((mean.double().view_as(mean64) - mean64) * rstd64).abs().max().item()
    rstd_error = (rstd.double().view_as(rstd64) / rstd64 - 1).abs().max().item()
    assert mean_error <= MEAN_BOUND, f"mean {mean_error:.2e} spreads off float64"
    assert rstd_error <= RSTD_BOUND, f"rstd {rstd_error:.2e} off float64"
