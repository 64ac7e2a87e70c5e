"""The benchmark harness behind ``fastp2p bench`` (DESIGN.md §6).

Helpers for the micro-benchmark modules in ``benchmarks/bench_*.py`` (see ``fastp2p.bench.micro``
for their ``collect(quick)`` contract):
- ``benchmark(fn, device=..., warmup_ms=..., rep_ms=...)`` -> ``Timing(median_ms, p20_ms,
  p80_ms, count)``, with ``triton.testing.do_bench`` semantics (L2 flushed per call on CUDA);
- ``copy_bandwidth_gbps(device)``: the device-to-device copy bandwidth measured once in this
  process (the same number the harness divides by);
- ``matmul_rate(device)``: the measured matmul rate (bf16 on CUDA) in TFLOP/s.
"""
from fastp2p.bench.ceilings import copy_bandwidth, copy_bandwidth_gbps, matmul_rate
from fastp2p.bench.timing import Timing, benchmark, time_steps

__all__ = ["Timing", "benchmark", "copy_bandwidth", "copy_bandwidth_gbps", "matmul_rate",
           "time_steps"]
