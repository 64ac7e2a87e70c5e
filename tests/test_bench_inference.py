"""The inference section of the benchmark: which variants run where, and the ratios it reports."""
import time

import torch

from fastp2p.bench.inference import (InferenceCase, Variant, finalize_inference_rows,
                                     inference_job, inference_jobs)
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.runner import Runner


def _names(jobs):
    return {(job.identity["module"], job.identity["precision"], job.identity["channels_last"],
             job.identity["mode"]) for job in jobs}


def test_cpu_variants_compile_only_when_asked_and_never_graphed():
    jobs, compiled = inference_jobs("cpu", QUICK_CONFIG, quick=False, rep_ms=1.0)
    assert compiled == []
    names = _names(jobs)
    assert ("reference", "fp32", False, "eval") in names
    assert ("reference", "fp32", True, "train") in names
    assert ("fastp2p", "fp32", True, "eval") in names
    assert ("fastp2p unfolded", "fp32", True, "eval") in names
    assert ("fastp2p unfolded", "fp32", True, "train") not in names  # folding: eval only
    assert not any("graphed" in name[0] for name in names)
    assert {job.identity["batch_size"] for job in jobs} == {1, 4}
    assert min(job.identity["threads"] for job in jobs) <= 2
    _, compiled = inference_jobs("cpu", QUICK_CONFIG, quick=False, rep_ms=1.0,
                                 compile_modes=("default", "reduce-overhead"))
    assert {job.identity["module"] for job in compiled} == {"reference compile"}


def test_gpu_variants_cover_the_issue_matrix():
    jobs, compiled = inference_jobs("cuda", QUICK_CONFIG, quick=False, rep_ms=1.0,
                                    compile_modes=("default", "reduce-overhead"))
    names = _names(jobs)
    for name in [("reference", "fp32", False, "eval"), ("reference", "fp32", True, "eval"),
                 ("reference", "bf16", True, "train"), ("fastp2p", "bf16", True, "eval"),
                 ("fastp2p unfolded", "bf16", True, "eval"),
                 ("fastp2p graphed", "bf16", True, "train")]:
        assert name in names, name
    assert {job.identity["batch_size"] for job in jobs} == {1, 16, 64}
    assert _names(compiled) == {(m, "bf16", True, mode) for mode in ("eval", "train")
                                for m in ("reference compile",
                                          "reference compile reduce-overhead")}


def _row(module, images_per_s, batch=1, mode="eval", status="ok"):
    return {"module": module, "device": "cuda", "precision": "bf16", "channels_last": True,
            "batch_size": batch, "mode": mode, "threads": None, "status": status,
            "images_per_s": images_per_s}


def test_ratio_is_the_fastest_fastp2p_variant_of_the_same_case():
    rows = finalize_inference_rows([
        _row("reference", 100.0), _row("fastp2p", 150.0), _row("fastp2p graphed", 400.0),
        _row("reference compile", 200.0), _row("reference", 50.0, mode="train"),
        _row("fastp2p", 75.0, mode="train"), _row("fastp2p graphed", 0.0, mode="train",
                                                  status="failed")])
    ratios = {(r["module"], r["mode"]): r["fastp2p_ratio"] for r in rows}
    assert ratios[("reference", "eval")] == 4.0
    assert ratios[("reference compile", "eval")] == 2.0
    assert ratios[("reference", "train")] == 1.5  # the failed graphed row does not count
    assert ratios[("fastp2p", "eval")] is None
    assert rows[0]["fastp2p_best"] == "fastp2p graphed (bf16, channels-last)"


def test_an_eval_job_checks_its_output_against_the_reference_before_timing():
    threads = torch.get_num_threads()
    variant = Variant("fastp2p", True, "eager", "fp32", True)
    rows = Runner(job_time_limit=120).run(
        inference_job(variant, InferenceCase("cpu", 1, train=False, threads=1), QUICK_CONFIG,
                      rep_ms=5.0))
    assert rows[0]["status"] == "ok", rows[0].get("traceback")
    assert 0 < rows[0]["relative_error_vs_reference"] < 1e-4
    assert torch.get_num_threads() == threads  # the job's thread count is restored


def test_rows_record_that_the_default_generator_has_dropout():
    jobs, _ = inference_jobs("cpu", QUICK_CONFIG, quick=True, rep_ms=1.0)
    assert QUICK_CONFIG.use_dropout and all(job.identity["dropout"] is True for job in jobs)


def test_a_row_records_the_build_and_first_call_as_setup_seconds(monkeypatch):
    """A variant whose first call is slow (torch.compile, graph capture) shows it there."""
    from fastp2p.bench import inference

    def slow_first_call(variant, model):
        calls = []

        def forward(image):
            if not calls:
                time.sleep(0.2)
            calls.append(1)
            return model(image)
        return forward

    monkeypatch.setattr(inference, "_prepare", slow_first_call)
    variant = Variant("reference", False, "eager", "fp32", False)
    (row,) = Runner(job_time_limit=120).run(
        inference_job(variant, InferenceCase("cpu", 1, train=True), QUICK_CONFIG, rep_ms=5.0))
    assert row["status"] == "ok", row.get("traceback")
    assert 0.2 <= row["setup_seconds"] < 60


def test_a_non_finite_train_mode_output_fails_its_job(monkeypatch):
    """Train mode has no reference to match (dropout masks differ), but a NaN still fails."""
    from fastp2p.bench import inference

    monkeypatch.setattr(inference, "_prepare",
                        lambda variant, model: lambda image: model(image) * float("nan"))
    variant = Variant("fastp2p", True, "eager", "fp32", False)
    (row,) = Runner(job_time_limit=120).run(
        inference_job(variant, InferenceCase("cpu", 1, train=True), QUICK_CONFIG, rep_ms=5.0))
    assert row["status"] == "failed" and "train-mode output" in row["error"], row
