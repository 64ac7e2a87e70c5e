"""Running a benchmarks/compile_*_for_gpu.py script the way the sm_90 compile tests do: in a
subprocess without TRITON_INTERPRET (the real compiler, not the interpreter, must see the
kernels), failing with the script's output when it exits non-zero."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="needs triton")


def run_compile_script(name: str, timeout: int = 600) -> str:
    """The stdout of ``benchmarks/NAME``, after asserting that it exited with 0."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    result = subprocess.run([sys.executable, str(BENCHMARKS / name)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout
