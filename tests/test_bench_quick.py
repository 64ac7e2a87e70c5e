"""`fastp2p bench --quick` runs end to end on a CPU, so the suite cannot rot (CI, < 2 min).

It runs the checkout's real micro-benchmark modules (benchmarks/bench_*.py) in quick mode: one
that breaks fails this test.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]


def _bench(*args, cwd):
    # From a folder outside the checkout, so the installed fastp2p is what runs.
    return subprocess.run([sys.executable, "-m", "fastp2p", "bench", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _engine_available() -> bool:
    try:
        return importlib.util.find_spec("fastp2p.train.engine") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench_quick")
    out = work / "results"
    result = _bench("--quick", "--out", str(out), "--benchmarks-dir",
                    str(CHECKOUT / "benchmarks"), cwd=work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(out.iterdir())
    return result, files


def test_quick_run_writes_json_table_and_chart(quick_run):
    result, files = quick_run
    suffixes = sorted(path.suffix for path in files)
    assert suffixes == [".json", ".md", ".png"], files
    assert all(path.stem.startswith("cpu-") and path.stem.endswith("-quick") for path in files)
    table = next(path for path in files if path.suffix == ".md").read_text()
    assert "Quick mode" in table
    assert result.stdout.rstrip().endswith(table.rstrip().splitlines()[-1])  # table printed last
    assert "training: reference batch 1 ..." in result.stdout  # timestamped progress


def test_quick_run_measures_cpu_peers_honestly(quick_run):
    _, files = quick_run
    results = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    assert results["mode"] == "quick" and results["environment"]["device_type"] == "cpu"
    assert results["ceilings"]["copy"]["gbps"] > 0 and results["ceilings"]["matmul"]["tflops"] > 0
    training = {(row["peer"], row["batch_size"]): row for row in results["training"]}
    assert set(training) == {(peer, batch) for peer in ("reference", "eager-tuned", "fastp2p")
                             for batch in (1, 2)}
    for peer in ("reference", "eager-tuned"):
        for batch in (1, 2):
            row = training[(peer, batch)]
            assert row["status"] == "ok", row
            assert row["device"] == "cpu" and row["steps"] == 3
            assert row["images_per_s_p20"] <= row["images_per_s"] <= row["images_per_s_p80"]
            assert 0 < row["mfu"] < 1
    fastp2p = training[("fastp2p", 1)]
    if _engine_available():
        assert fastp2p["status"] == "ok", fastp2p
        assert training[("reference", 1)]["fastp2p_ratio"] > 0
    else:  # the engine is not on this branch yet: a failed peer with its error, run goes on
        assert fastp2p["status"] == "failed" and "fastp2p.train" in fastp2p["error"]
    inference = {(row["module"], row["device"]): row for row in results["inference"]}
    assert set(inference) == {("reference", "cpu"), ("fastp2p", "cpu"),
                              ("fastp2p unfolded", "cpu")}
    assert all(row["status"] == "ok" for row in inference.values())


def test_quick_run_runs_every_micro_module(quick_run):
    _, files = quick_run
    results = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    modules = sorted(path.stem for path in (CHECKOUT / "benchmarks").glob("bench_*.py"))
    assert sorted({row["module"] for row in results["micro"]}) == modules
    for row in results["micro"]:
        assert row["status"] in ("ok", "skipped"), row  # skipped: a pytest-only module
        if row["status"] == "ok" and "gbps" in row:
            assert row["copy_fraction"] == pytest.approx(row["gbps"] / row["copy_gbps"])


def test_plot_remakes_table_and_chart_from_saved_json(quick_run, tmp_path):
    _, files = quick_run
    saved = next(p for p in files if p.suffix == ".json")
    copy = tmp_path / saved.name
    copy.write_text(saved.read_text())
    result = _bench("--plot", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert copy.with_suffix(".png").stat().st_size > 1000
    assert copy.with_suffix(".md").read_text() == saved.with_suffix(".md").read_text()


@pytest.mark.parametrize("args, message", [
    (("--peers", "reference,warp-drive"), "unknown peer 'warp-drive'"),
    (("--quick", "--device", "cuda"), "--quick is the CPU smoke mode"),
    (("--device", "cpu", "--peers", "cuda-graph"), "need a CUDA GPU"),
    (("--sections", "training,everything"), "argument --sections: takes"),
    (("--steps", "0"), "argument --steps: must be >= 1"),
    (("--plot", "missing.json"), "not found"),
    # --benchmarks-dir: an installed fastp2p (CI's) has no checkout to find the folder in
    (("--quick", "--micro", "bench_nope", "--benchmarks-dir", str(CHECKOUT / "benchmarks")),
     "--micro: no bench_nope"),
], ids=["unknown-peer", "quick-on-cuda", "graph-on-cpu", "bad-section", "zero-steps",
        "plot-missing", "unknown-micro-module"])
def test_bad_options_get_a_clear_error(args, message, tmp_path):
    result = _bench(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_help_explains_every_option(tmp_path):
    result = _bench("--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--batch-sizes", "--steps", "--warmup", "--peers", "--out", "--quick",
                   "--plot", "--peer-time-limit", "--time-budget", "--sections", "--device",
                   "--micro"):
        assert option in result.stdout
