"""The fused-convolution Triton kernels compile for a real GPU target (sm_90) on a machine
without one: one specialization per code path (benchmarks/compile_conv_fused_for_gpu.py)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_conv_fused_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    script = (Path(__file__).resolve().parents[2] / "benchmarks"
              / "compile_conv_fused_for_gpu.py")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "0 failed" in result.stdout
