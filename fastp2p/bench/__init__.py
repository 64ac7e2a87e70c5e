"""The benchmark harness behind ``fastp2p bench`` (DESIGN.md §6; the command is
``fastp2p.bench.command``).

Helpers for the micro-benchmark modules in ``benchmarks/bench_*.py`` (see ``fastp2p.bench.micro``
for their ``collect(quick)`` contract), imported from their modules:
- ``fastp2p.bench.timing.benchmark(fn, device=..., warmup_ms=..., rep_ms=...)`` ->
  ``Timing(median_ms, p20_ms, p80_ms, count)``, with ``triton.testing.do_bench`` semantics (L2
  flushed per call on CUDA);
- ``fastp2p.bench.ceilings.copy_bandwidth_gbps(device)``: the device-to-device copy bandwidth
  measured once in this process (the same number the harness divides by);
- ``fastp2p.bench.ceilings.matmul_rate(device)``: the measured matmul rate (bf16 on CUDA), its
  ``tflops`` in TFLOP/s.

The package itself imports nothing: ``fastp2p bench --help`` reads it without torch.
"""
