"""Kernels per training step in the benchmark results (fastp2p.bench.launches): the counting on
a synthetic profiler event list, and the fields' presence (None) in a CPU run."""
from types import SimpleNamespace

import pytest
import torch

from fastp2p.bench.launches import count_device_work, device_work_per_step
from fastp2p.bench.networks import NetworkConfig
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Runner
from fastp2p.bench.training import TrainingSettings, training_job

CUDA, CPU = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU


def _event(name, device_type):
    return SimpleNamespace(name=name, device_type=device_type)


def test_count_splits_device_kernels_from_copies_and_skips_host_events():
    events = [
        _event("aten::convolution", CPU),
        _event("cudaGraphLaunch", CPU),
        _event("sm90_xmma_fprop_implicit_gemm_bf16", CUDA),
        _event("_norm_act_fwd_kernel", CUDA),
        _event("_norm_act_fwd_kernel", CUDA),
        _event("Memcpy HtoD (Pinned -> Device)", CUDA),
        _event("Memset (Device)", CUDA),
        _event("void at::native::vectorized_elementwise_kernel<4>", CUDA),
    ]
    assert count_device_work(events) == {"kernels": 4, "memory_ops": 2}
    assert count_device_work([]) == {"kernels": 0, "memory_ops": 0}


def test_no_counts_without_cuda():
    calls = []
    assert device_work_per_step(lambda: calls.append(1), "cpu") == {
        "kernels_per_step": None, "memory_ops_per_step": None}
    assert calls == []  # nothing run for nothing measured


def test_cpu_training_rows_carry_the_fields_as_none():
    config = NetworkConfig(image_size=32, num_downs=5, ngf=4, ndf=4)
    settings = TrainingSettings(config, (1,), steps=2, warmup=1, device="cpu")
    rows = Runner(job_time_limit=60).run(training_job(peer_by_name("reference"), 1, settings))
    assert rows[0]["status"] == "ok", rows
    assert rows[0]["kernels_per_step"] is None and rows[0]["memory_ops_per_step"] is None


@pytest.mark.cuda
def test_cuda_step_counts_its_kernels():
    x = torch.randn(1024, device="cuda")
    counts = device_work_per_step(lambda: (x * 2 + 1).sum(), "cuda", steps=2)
    assert counts["kernels_per_step"] >= 2  # at least the multiply-add and the reduction


@pytest.mark.cuda
@pytest.mark.parametrize("peer", ["fastp2p", "fastp2p-master-weights", "fastp2p-step-losses"])
def test_cuda_training_rows_count_the_captured_steps_kernels(peer):
    from fastp2p.bench.networks import QUICK_CONFIG

    settings = TrainingSettings(QUICK_CONFIG, (2,), steps=3, warmup=5, device="cuda")
    rows = Runner(job_time_limit=120).run(training_job(peer_by_name(peer), 2, settings))
    assert rows[0]["status"] == "ok", rows[0].get("traceback")
    assert rows[0]["kernels_per_step"] > 10  # graph replays are seen, not just the launch
