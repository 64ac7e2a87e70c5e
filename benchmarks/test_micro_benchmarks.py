"""pytest-benchmark over one shape of each fused op: ``pytest benchmarks/`` (needs the [test]
extra's pytest-benchmark). Kept apart from the ``bench_*.py`` modules so that ``fastp2p bench``
imports those with the package's own dependencies alone, without pytest.
"""
import pytest
import torch

from benchmarks import bench_losses, bench_norm_act
from benchmarks.kernel_timing import default_device


def _synchronized(fn, device):
    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


@pytest.mark.parametrize("provider", ["eager", "fastp2p"])
@pytest.mark.parametrize("op", ["gan_loss[vanilla]", "l1_loss"])
def test_loss_benchmark(benchmark, provider, op):
    device = default_device()
    x = torch.randn(1 if device.type == "cpu" else 64, *bench_losses.SHAPES[op], device=device)
    y = torch.randn_like(x)
    fn = bench_losses._eager(op) if provider == "eager" else bench_losses._fused(op, device)
    benchmark(_synchronized(lambda: fn(x, y), device))


@pytest.mark.parametrize("provider", ["eager", "fastp2p"])
@pytest.mark.parametrize("op", ["norm_act", "norm_act_concat"])
def test_norm_act_benchmark(benchmark, provider, op):
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    side = 64 if device.type == "cuda" else 8
    args, _ = bench_norm_act._inputs(op, 1 if device.type == "cpu" else 64, 64, side, dtype,
                                     device)
    fn = (bench_norm_act._eager(op, "instance") if provider == "eager"
          else bench_norm_act._fused(op, "instance"))
    with torch.no_grad():
        benchmark(_synchronized(lambda: fn(*args), device))
