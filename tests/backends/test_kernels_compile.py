"""The Triton kernels compile for a real GPU target (sm_90) even on a machine without one."""
from helpers.sm90_compile import needs_triton, run_compile_script


@needs_triton
def test_kernels_compile_for_sm90():
    assert "0 failed" in run_compile_script("compile_kernels_for_gpu.py")
