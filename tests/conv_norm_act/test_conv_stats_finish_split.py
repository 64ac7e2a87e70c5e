"""The fused conv's statistics merged in two launches (conv_stats_finish's split of a group's
tiles into chunks, which batch norm at batch 64 takes at the large layers) against float64,
through the interpreter on small shapes with the split forced by small chunks: the statistics,
the next prologue's scale / shift, the running update, and, through the op (conv_norm_act),
its output and every gradient, for instance and batch norm. Chunks of 3 tiles leave a short
last chunk; an image's 4 tiles in chunks of 1 split each image (instance norm)."""
import pytest
import torch
import torch.nn.functional as F

from helpers.conv_fused_reference import conv_fused_reference, statistics_reference
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import KERNELS

pytest.importorskip("triton")
from fastp2p.kernels.conv_fused import InputTransform, conv_fused_fwd  # noqa: E402
from fastp2p.kernels.conv_stats_finish import (conv_stats_finish,  # noqa: E402
                                               conv_stats_finish_in_chunks, finish_chunks)
from fastp2p.ops.conv_norm_act import conv_norm_act  # noqa: E402

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]

EPS, MOMENTUM = 0.5, 0.3


def _rand(gen, *shape, spread=1.0, center=0.0):
    return torch.randn(shape, generator=gen, dtype=torch.float64) * spread + center


@pytest.mark.parametrize("norm, transposed, chunk_tiles, chunks", [
    ("instance", False, 1, 4), ("batch", False, 3, 3), ("batch", True, 3, 11)])
def test_split_statistics_match_float64(norm, transposed, chunk_tiles, chunks):
    """conv_stats_finish split into chunks: mean, rstd, scale, shift and the running update
    as float64's, and as the one launch's to a few float32 roundings."""
    gen = torch.Generator().manual_seed(1)
    x = _rand(gen, 2, 3, 16 if transposed else 32, 16 if transposed else 32, center=0.5)
    w = _rand(gen, *((3, 6) if transposed else (6, 3)), 4, 4, spread=0.3)
    y64 = conv_fused_reference([x], [InputTransform()], w, None, stride=2, padding=1,
                               transposed=transposed)
    _, parts = conv_fused_fwd([x.float().contiguous(memory_format=torch.channels_last)],
                              [InputTransform()], w.float(), None, stride=2, padding=1,
                              transposed=transposed, partials=True)
    per_sample = norm == "instance"
    N, T, _ = parts.a.shape
    assert finish_chunks(T if per_sample else N * T, chunk_tiles) == chunks
    gamma, beta = _rand(gen, 6, spread=0.3, center=1), _rand(gen, 6, spread=0.5)
    running64 = (_rand(gen, 6), _rand(gen, 6, center=2).abs())

    def finish(launcher, *chunk_tiles):
        running = (None, None) if per_sample else tuple(r.float() for r in running64)
        out = launcher(parts, *chunk_tiles, per_sample=per_sample, eps=EPS, gamma=gamma.float(),
                       beta=beta.float(), running_mean=running[0], running_var=running[1],
                       momentum=MOMENTUM)
        return out, running

    (mean, rstd, scale, shift), running = finish(conv_stats_finish_in_chunks, chunk_tiles)
    mean64, var64 = statistics_reference(y64, per_sample)
    rstd64 = (var64 + EPS).rsqrt()
    assert_close(mean, mean64, FP32_SINGLE_OP, "mean")
    assert_close(rstd, rstd64, FP32_SINGLE_OP, "rstd")
    assert_close(scale, gamma * rstd64, FP32_SINGLE_OP, "scale")
    assert_close(shift, beta - mean64 * gamma * rstd64, FP32_SINGLE_OP, "shift")
    if not per_sample:
        count = y64.numel() / y64.shape[1]
        assert_close(running[0], (1 - MOMENTUM) * running64[0] + MOMENTUM * mean64,
                     FP32_SINGLE_OP, "running_mean")
        assert_close(running[1], (1 - MOMENTUM) * running64[1]
                     + MOMENTUM * var64 * count / (count - 1), FP32_SINGLE_OP, "running_var")
    one_launch, _ = finish(conv_stats_finish)  # these few tiles: one launch
    for name, got, expected in zip(("mean", "rstd", "scale", "shift"),
                                   (mean, rstd, scale, shift), one_launch):
        assert_close(got, expected, 1e-6, f"{name} split vs one launch")


def _params(gen):
    return dict(
        x=_rand(gen, 2, 3, 32, 32, spread=2, center=0.5), w1=_rand(gen, 5, 3, 4, 4, spread=0.3),
        b1=_rand(gen, 5), g1=_rand(gen, 5, spread=0.3, center=1), be1=_rand(gen, 5, spread=0.5),
        w2=_rand(gen, 5, 4, 4, 4, spread=0.2), b2=_rand(gen, 4),
        g2=_rand(gen, 4, spread=0.3, center=1), be2=_rand(gen, 4, spread=0.5),
        grad=_rand(gen, 2, 4, 32, 32))


def _reference(p, running):
    """float64: conv -> InstanceNorm(affine) -> ReLU -> ConvTranspose -> BatchNorm(affine,
    training), plus half the pre-norm output (so the last bias's gradient does not cancel)."""
    y1 = F.conv2d(p["x"], p["w1"], p["b1"], stride=2, padding=1)
    a1 = torch.relu(F.instance_norm(y1, weight=p["g1"], bias=p["be1"], eps=EPS))
    y2 = F.conv_transpose2d(a1, p["w2"], p["b2"], stride=2, padding=1)
    return F.batch_norm(y2, *running, weight=p["g2"], bias=p["be2"], training=True,
                        momentum=MOMENTUM, eps=EPS) + 0.5 * y2


def _fused(p, running):
    y1, mean1, rstd1 = conv_norm_act([p["x"]], [InputTransform()], p["w1"], p["b1"], stride=2,
                                     padding=1, norm="instance", eps=EPS)
    scale1 = p["g1"] * rstd1
    transform = InputTransform(scale1, p["be1"] - mean1 * scale1, "relu")
    y2, mean2, rstd2 = conv_norm_act([y1], [transform], p["w2"], p["b2"], stride=2, padding=1,
                                     transposed=True, norm="batch", eps=EPS,
                                     running_mean=running[0], running_var=running[1],
                                     momentum=MOMENTUM)
    scale2 = p["g2"] * rstd2
    return y2 * scale2[None, :, None, None] + (p["be2"] - mean2 * scale2)[None, :, None, None] \
        + 0.5 * y2


def test_op_with_split_statistics_matches_float64(monkeypatch):
    """conv_norm_act in a chain, its launchers' finish splitting every group (instance norm: an
    image's 4 tiles in 4 chunks; batch norm: 32 tiles in 11 chunks of 3, the last of 2): the
    output, running update and every gradient as float64's."""
    splits = []

    def split_finish(parts, *, per_sample, **options):
        N, T, _ = parts.a.shape
        chunk_tiles = 3 if T > 4 else 1
        splits.append(finish_chunks(T if per_sample else N * T, chunk_tiles))
        return conv_stats_finish_in_chunks(parts, chunk_tiles, per_sample=per_sample, **options)

    monkeypatch.setattr(KERNELS, "conv_stats_finish", split_finish)
    params64 = _params(torch.Generator().manual_seed(5))
    running64 = [torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)]
    leaves64 = {k: v.clone().requires_grad_() for k, v in params64.items() if k != "grad"}
    expected = _reference(leaves64, running64)
    expected.backward(params64["grad"])

    leaves = {k: v.float().requires_grad_() for k, v in params64.items() if k != "grad"}
    running = [torch.zeros(4), torch.ones(4)]
    got = _fused(leaves, running)
    got.backward(params64["grad"].float())
    assert splits == [4, 11], "the finish was not split as meant"

    assert_close(got, expected, FP32_SINGLE_OP, "output")
    assert_close(running[0], running64[0], FP32_SINGLE_OP, "running_mean")
    assert_close(running[1], running64[1], FP32_SINGLE_OP, "running_var")
    for name, leaf in leaves.items():
        if name == "b1":  # a bias before an instance norm: its exact gradient is 0
            assert leaf.grad.abs().max() < FP32_SINGLE_OP * leaves["w1"].grad.norm()
        else:
            assert_close(leaf.grad, leaves64[name].grad, FP32_SINGLE_OP, f"grad {name}")


def test_chunks_stay_within_the_launch_grid(monkeypatch):
    """A group that would need more than MAX_CHUNKS chunks (CUDA's grid axis z: 65535; here
    patched to 4, asked for chunks of 1 tile) is merged in larger chunks: no launch has more
    than MAX_CHUNKS on axis z, and the statistics are the one launch's."""
    from fastp2p.kernels import conv_stats_finish as finish_module

    gen = torch.Generator().manual_seed(2)
    x = _rand(gen, 2, 3, 32, 32, center=0.5).float().contiguous(memory_format=torch.channels_last)
    _, parts = conv_fused_fwd([x], [InputTransform()], _rand(gen, 6, 3, 4, 4).float(), None,
                              stride=2, padding=1, partials=True)
    one_launch = conv_stats_finish(parts, per_sample=False, eps=EPS)
    grids, kernel = [], finish_module._conv_stats_finish_kernel

    class Spy:
        def __getitem__(self, grid):
            grids.append(grid)
            return kernel[grid]

    monkeypatch.setattr(finish_module, "MAX_CHUNKS", 4)
    monkeypatch.setattr(finish_module, "_conv_stats_finish_kernel", Spy())
    split = conv_stats_finish_in_chunks(parts, 1, per_sample=False, eps=EPS)
    tiles = parts.a.shape[0] * parts.a.shape[1]
    assert tiles > 4   # chunks of 1 would have been more than the patched cap
    assert [grid[2] for grid in grids] == [finish_chunks(tiles, -(-tiles // 4)), 1]
    assert 1 < grids[0][2] <= 4
    for name, got, expected in zip(("mean", "rstd", "scale", "shift"), split, one_launch):
        assert_close(got, expected, 1e-6, f"{name} larger chunks vs one launch")
