"""The benchmark harness behind ``fastp2p bench`` (DESIGN.md §6).

Helpers for the micro-benchmark modules in ``benchmarks/bench_*.py`` (see ``fastp2p.bench.micro``
for their ``collect(quick)`` contract):
- ``benchmark(fn, device=..., warmup_ms=..., rep_ms=...)`` -> ``Timing(median_ms, p20_ms,
  p80_ms, count)``, with ``triton.testing.do_bench`` semantics (L2 flushed per call on CUDA);
- ``copy_bandwidth_gbps(device)``: the device-to-device copy bandwidth measured once in this
  process (the same number the harness divides by);
- ``matmul_rate(device)``: the measured matmul rate (bf16 on CUDA) in TFLOP/s.

Imported on first use (PEP 562): ``fastp2p bench --help`` reads this package without torch.
"""
import importlib

_PUBLIC = {"copy_bandwidth": "ceilings", "copy_bandwidth_gbps": "ceilings",
           "matmul_rate": "ceilings", "Timing": "timing", "benchmark": "timing",
           "time_steps": "timing"}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value
