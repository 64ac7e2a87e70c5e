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


def test_a_run_stopped_at_the_second_batch_size_keeps_the_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Stand-in GPU")
    monkeypatch.setattr(PROFILE_STEP.ceilings, "matmul_rate",
                        lambda device: {"dtype": "bfloat16", "tflops": 700.0})
    monkeypatch.setattr(PROFILE_STEP.ceilings, "copy_bandwidth",
                        lambda device: {"gbps": 4000.0})
    monkeypatch.setattr(PROFILE_STEP, "profile_batch", _profile_batch_stopped_at_64)
    out = tmp_path / "profile.txt"
    with pytest.raises(KeyboardInterrupt):
        PROFILE_STEP.main(["--batch-sizes", "1,64", "--out", str(out)])
    report = out.read_text()
    assert report.startswith("device Stand-in GPU")
    assert "== batch 1: 2.50 GPU ms per step" in report and "conv_kernel" in report
    assert "== batch 64" not in report
    assert "== batch 1: 2.50 GPU ms per step" in capsys.readouterr().out
