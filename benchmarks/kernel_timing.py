"""Rows of the kernel micro-benchmarks, timed by the suite's own harness (fastp2p.bench): medians
with p20/p80 (on a GPU, of CUDA-graph replays: GPU time without the host's launch overhead), and
every GB/s figure beside its fraction of the device-to-device copy bandwidth that the same
process measures."""
import sys

import torch

from fastp2p.bench.ceilings import copy_bandwidth_gbps
from fastp2p.nn.cuda_graphs import capture
from fastp2p.bench.timing import benchmark

__all__ = ["captured", "copy_bandwidth_gbps", "default_device", "row", "time_ms"]


def time_ms(fn, device: torch.device, quick: bool = False):
    """(median, p20, p80) milliseconds of fn(); on a GPU, replays of fn captured as a CUDA graph
    timed by CUDA events with the L2 flushed per call, on a CPU a wall clock (labelled by the
    caller's device column).

    The graph keeps the host out of the figure: the training step replays its kernels from one
    graph, so their GPU time is what it pays, while a direct call of a small layer's op would
    time Python and launch overhead (benchmarks/NOTES.md, run 1: "GPU inference")."""
    if device.type == "cuda":
        fn = captured(fn)
    timing = benchmark(fn, device=device, warmup_ms=10 if quick else 25,
                       rep_ms=20 if quick else 100, min_reps=3 if quick else 10)
    return timing.median_ms, timing.p20_ms, timing.p80_ms


def captured(fn):
    """fn as one CUDA graph replay (``fastp2p.nn.cuda_graphs.capture``), or fn itself, with a
    warning, when something in it cannot be captured."""
    try:
        return capture(fn)
    except RuntimeError as error:
        print(f"kernel_timing: CUDA-graph capture failed ({error}); timing direct calls, host "
              "overhead included", file=sys.stderr)
        return fn


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
