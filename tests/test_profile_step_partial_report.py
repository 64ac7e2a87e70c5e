"""benchmarks/profile_step.py writes its report after each batch size, run on a CPU with the
profiler and the ceilings stood in: gpu_check.sh's profile stage stops it with SIGINT at its
time limit, and before, a run stopped during batch 64 wrote and printed nothing, batch 1's
finished profile included."""
import pytest
import torch

from helpers.benchmark_scripts import load_benchmark_script

PROFILE_STEP = load_benchmark_script("profile_step")


def _profile_batch_stopped_at_64(batch, *args):
    """Batch 1's figures; at batch 64, the time limit's SIGINT."""
    if batch == 64:
        raise KeyboardInterrupt
    counts = {"kernels": 300, "memory_ops": 12, "streams": {7: 2.5}, "busy_ms": 2.5}
    return 2.5, {"convolution / GEMM": 1.5, "adam": 1.0}, [("conv_kernel", 1.5, 20.0)], counts


def _profile_batch(batch, *args):
    """The figures of every batch size (a run not stopped)."""
    return _profile_batch_stopped_at_64(1, *args)


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """A GPU of 700 TFLOP/s and 4000 GB/s, and a model of 7 GFLOP per image per step."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Stand-in GPU")
    monkeypatch.setattr(PROFILE_STEP.ceilings, "matmul_rate",
                        lambda device: {"dtype": "bfloat16", "tflops": 700.0})
    monkeypatch.setattr(PROFILE_STEP.ceilings, "copy_bandwidth",
                        lambda device: {"gbps": 4000.0})
    monkeypatch.setattr(PROFILE_STEP, "training_step_flops",
                        lambda config: {"train_step_gflop_per_image": 7.0})


def test_a_run_stopped_at_the_second_batch_size_keeps_the_first(tmp_path, monkeypatch, capsys,
                                                                stand_in_gpu):
    monkeypatch.setattr(PROFILE_STEP, "profile_batch", _profile_batch_stopped_at_64)
    out = tmp_path / "profile.txt"
    with pytest.raises(KeyboardInterrupt):
        PROFILE_STEP.main(["--batch-sizes", "1,64", "--out", str(out)])
    report = out.read_text()
    assert report.startswith("device Stand-in GPU")
    assert "== batch 1: 2.50 GPU ms per step" in report and "conv_kernel" in report
    assert "== batch 64" not in report
    assert "== batch 1: 2.50 GPU ms per step" in capsys.readouterr().out


def test_a_whole_runs_report_holds_each_batch_size_with_its_flop_floor(tmp_path, monkeypatch,
                                                                        capsys, stand_in_gpu):
    """The floor is the batch's FLOP at the measured matmul rate: 7 GFLOP x 64 images at 700
    TFLOP/s is 0.64 ms."""
    monkeypatch.setattr(PROFILE_STEP, "profile_batch", _profile_batch)
    out = tmp_path / "profile.txt"
    assert PROFILE_STEP.main(["--batch-sizes", "1,64", "--out", str(out)]) == 0
    report = out.read_text()
    assert report.startswith("device Stand-in GPU") and report.count("conv_kernel") == 2
    assert "== batch 1: 2.50 GPU ms per step (eager, summed kernel time); FLOP floor 0.01 ms" \
        in report
    assert "== batch 64: 2.50 GPU ms per step (eager, summed kernel time); FLOP floor 0.64 ms " \
        "(26% of it)" in report
    assert capsys.readouterr().out == report
