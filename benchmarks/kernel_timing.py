"""Rows of the kernel micro-benchmarks, timed by the suite's own harness (fastp2p.bench): medians
with p20/p80, and every GB/s figure beside its fraction of the device-to-device copy bandwidth
that the same process measures."""
import torch

from fastp2p.bench.ceilings import copy_bandwidth_gbps
from fastp2p.bench.timing import benchmark

__all__ = ["copy_bandwidth_gbps", "default_device", "row", "time_ms"]


def time_ms(fn, device: torch.device, quick: bool = False):
    """(median, p20, p80) milliseconds of fn(); CUDA events with the L2 flushed per call on a
    GPU, a wall clock on a CPU (labelled by the caller's device column)."""
    timing = benchmark(fn, device=device, warmup_ms=10 if quick else 25,
                       rep_ms=20 if quick else 100, min_reps=3 if quick else 10)
    return timing.median_ms, timing.p20_ms, timing.p80_ms


def row(op, shape, dtype, provider, timing_ms, moved_bytes, copy_gbps, **extra) -> dict:
    median, p20, p80 = timing_ms
    gbps = moved_bytes / (median * 1e-3) / 1e9
    dtype_name = str(dtype).replace("torch.", "")
    shape = list(shape)
    mode = f" {extra['mode']}" if "mode" in extra else ""
    return dict(name=f"{op} {'x'.join(map(str, shape))} {dtype_name}{mode}: {provider}",
                op=op, shape=shape, dtype=dtype_name, provider=provider, median_ms=median,
                p20_ms=p20, p80_ms=p80, bytes=moved_bytes, gbps=gbps, copy_gbps=copy_gbps,
                copy_fraction=gbps / copy_gbps, **extra)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
