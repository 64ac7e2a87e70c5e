"""fastp2p's benchmark suite: ``python -m benchmarks`` (= ``fastp2p bench``) from a checkout.

The harness lives in ``fastp2p.bench``; each ``bench_*.py`` here exposes ``collect(quick)``
rows for the suite, with the package's own dependencies (no pytest); test_micro_benchmarks.py
holds the pytest-benchmark tests that ``pytest benchmarks/`` runs.
"""
