"""The order a GPU bench run builds its jobs in: under a time budget the last jobs are cut
(reported as skipped), so the compiled training peers, never measured yet, come before the
reference's compiled inference variants, max-autotune (the slowest to build) last among them.
Before, the 12 compiled inference jobs ran first and a short GPU window's budget went to them;
then max-autotune ran after them, where an 8-minute window's budget never reached it."""
import pytest
import torch

from fastp2p.bench import suite
from fastp2p.bench.defaults import INFERENCE_COMPILE_MODES
from fastp2p.bench.networks import FULL_CONFIG
from fastp2p.bench.peer_specs import PEERS

PEER_NAMES = ("reference", "fastp2p", "compile-default", "compile-reduce-overhead",
              "compile-max-autotune")


def _kind(job) -> str:
    if job.section == "inference":
        compiled = job.identity["execution"] in INFERENCE_COMPILE_MODES
        return "compiled inference" if compiled else "inference"
    if job.identity["execution"] != "compile":
        return "training"
    autotune = job.identity["peer"] == "compile-max-autotune"
    return "max-autotune training" if autotune else "compiled training"


@pytest.fixture
def gpu_jobs(monkeypatch):
    # building (not running) the jobs touches no GPU but the PDL peer's capability check
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    peers = [peer for peer in PEERS if peer.name in PEER_NAMES]
    assert {peer.name for peer in peers} == set(PEER_NAMES)
    settings = suite.SuiteSettings(
        quick=False, device="cuda", sections=("training", "inference"), config=FULL_CONFIG,
        batch_sizes=(1, 64), steps=50, warmup=10, peers=peers, job_time_limit=None,
        time_budget=None, benchmarks_dir=None, inference_rep_ms=500.0)
    return suite.plan_jobs(settings)[0]


def test_every_compiled_training_peer_runs_before_compiled_inference(gpu_jobs):
    kinds = [_kind(job) for job in gpu_jobs]
    blocks = [kind for index, kind in enumerate(kinds) if index == 0 or kinds[index - 1] != kind]
    assert blocks == ["training", "inference", "compiled training", "max-autotune training",
                      "compiled inference"]


def test_compiled_training_jobs_take_the_largest_batch_first(gpu_jobs):
    compiled = [(job.identity["peer"], job.identity["batch_size"]) for job in gpu_jobs
                if _kind(job) in ("compiled training", "max-autotune training")]
    assert compiled == [("compile-default", 64), ("compile-reduce-overhead", 64),
                        ("compile-default", 1), ("compile-reduce-overhead", 1),
                        ("compile-max-autotune", 64), ("compile-max-autotune", 1)]
