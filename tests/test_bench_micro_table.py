"""The micro-benchmark table of `fastp2p bench`: a case faster than the copy ceiling (its small
tensors stay in cache, the ceiling is a memory-sized copy) is marked, not shown as 348 %."""
from fastp2p.bench.render import markdown

RESULTS = {"mode": "quick", "complete": True,
           "environment": {"device": "cpu", "date_utc": "2026-12-06 10:00", "date": "20261206",
                           "commit": "abc1234", "python": "3.11.7", "torch": "2.13.0"},
           "config": {"network_description": "unet_64", "steps": 3, "warmup": 1},
           "training": []}


def _micro_row(name, copy_fraction, **fields):
    return {"module": "bench_cpu_inference", "status": "ok", "name": name, "median_ms": 0.05,
            "gbps": 10.0 * copy_fraction, "copy_fraction": copy_fraction, **fields}


def test_a_share_of_the_copy_above_one_is_marked_cache():
    table = markdown({**RESULTS, "micro": [_micro_row("small", 3.48), _micro_row("large", 0.44),
                                           _micro_row("at the ceiling", 1.0)]})
    assert "| small | 0.0500 | – | 34.8 | cache |" in table
    assert "| large | 0.0500 | – | 4.4 | 44% |" in table
    assert "| at the ceiling | 0.0500 | – | 10.0 | 100% |" in table
    assert "348" not in table and "cache = faster than that copy" in table


def test_a_case_names_its_provider_once():
    """bench_cpu_inference's names end in their provider ("...: eager"), which was said twice."""
    table = markdown({**RESULTS, "micro": [
        _micro_row("batchnorm-eval+act 128x64x64 nchw: eager", 0.44, provider="eager",
                   shape=[1, 128, 64, 64]),
        _micro_row("norm_act_fwd", 0.44, provider="fused", dtype="bf16", mode="forward"),
        {"module": "bench_pytest_only", "status": "skipped", "error": "no collect(quick)"}]})
    assert "| batchnorm-eval+act 128x64x64 nchw: eager [1, 128, 64, 64] |" in table
    assert "| norm_act_fwd fused bf16 forward |" in table
    assert "| bench_pytest_only |  | skipped: no collect(quick) |" in table
