"""fastp2p's benchmark suite: ``python -m benchmarks`` (= ``fastp2p bench``) from a checkout.

The harness lives in ``fastp2p.bench``; each ``bench_*.py`` here exposes ``collect(quick)``
rows for the suite and pytest-benchmark tests for ``pytest benchmarks/``.
"""
