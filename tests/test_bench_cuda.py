"""The benchmark harness on a GPU: CUDA-event timing, the ceilings, the peers' steps.

Small networks (the quick configuration) so the GPU check stays short; the full-size figures
come from the benchmark itself.
"""
import pytest
import torch

from fastp2p.bench import ceilings
from fastp2p.bench.inference import InferenceCase, Variant, inference_job
from fastp2p.bench.networks import QUICK_CONFIG, NetworkConfig, build_pair, make_batch
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.peers import TrainStep, capture_whole_step
from fastp2p.bench.runner import Runner
from fastp2p.bench.timing import benchmark
from fastp2p.bench.training import TrainingSettings, training_job

pytestmark = pytest.mark.cuda


def test_cuda_benchmark_reports_event_timings():
    a = torch.randn(2048, 2048, device="cuda")
    timing = benchmark(lambda: a @ a, device="cuda", warmup_ms=5, rep_ms=30)
    assert timing.count >= 10 and 0 < timing.p20_ms <= timing.median_ms <= timing.p80_ms
    # 17 GFLOP cannot take less than 10 us on any GPU of this decade: the events saw the work
    assert timing.median_ms > 0.01


def test_ceilings_are_plausible_and_cached():
    copy = ceilings.copy_bandwidth("cuda")
    assert 100 < copy["gbps"] < 20_000
    assert ceilings.copy_bandwidth_gbps("cuda") == copy["gbps"]  # measured once per process
    matmul = ceilings.matmul_rate("cuda")
    assert matmul["dtype"] == "bfloat16" and 10 < matmul["tflops"] < 5_000


@pytest.mark.parametrize("peer", ["reference", "eager-tuned", "cuda-graph"])
def test_peer_steps_run_and_report(peer):
    settings = TrainingSettings(QUICK_CONFIG, (2,), steps=3, warmup=1, device="cuda")
    rows = Runner(job_time_limit=120).run(training_job(peer_by_name(peer), 2, settings))
    assert rows[0]["status"] == "ok", rows[0].get("traceback")
    assert rows[0]["steps"] == 3 and rows[0]["images_per_s"] > 0
    assert rows[0]["peak_memory_bytes"] > 0


def test_whole_step_graph_replays_match_the_eager_step(deterministic_cudnn):
    # No dropout (its random stream differs between eager and replay); fp32 so the comparison
    # measures the capture, not bf16 rounding; capturable Adam in both, so the same update math.
    config = NetworkConfig(image_size=64, num_downs=6, ngf=8, ndf=8, use_dropout=False)
    real_a, real_b = make_batch(config, 2, "cuda")
    generators = []
    for graphed in (False, True):
        generator, discriminator = build_pair(config, fast=False, device="cuda", seed=3)
        step = TrainStep(generator, discriminator, device="cuda", precision="fp32",
                         fused_adam=True, capturable=True, autocast_cache=not graphed)
        if graphed:
            replay = capture_whole_step(step, real_a, real_b, warmup_iterations=2)
            for _ in range(3):  # 2 warm-up steps + 3 replays (capture itself runs nothing) = 5
                replay()
        else:
            for _ in range(5):
                step(real_a, real_b)
        torch.cuda.synchronize()
        generators.append(torch.cat([p.detach().flatten() for p in generator.parameters()]))
    eager, graphed = generators
    assert torch.isfinite(graphed).all()
    assert ((graphed - eager).norm() / eager.norm()).item() < 1e-3


@pytest.mark.parametrize("module, fast, execution", [("reference", False, "eager"),
                                                    ("fastp2p graphed", True, "graphed")])
def test_inference_case_runs_on_cuda(module, fast, execution):
    variant = Variant(module, fast, execution, "bf16", True)
    job = inference_job(variant, InferenceCase("cuda", 2, train=False), QUICK_CONFIG, 20.0)
    rows = Runner(job_time_limit=60).run(job)
    assert rows[0]["status"] == "ok", rows[0].get("traceback")
    assert rows[0]["images_per_s"] > 0 and rows[0]["peak_memory_bytes"] > 0
    assert rows[0]["relative_error_vs_reference"] <= 2e-2
