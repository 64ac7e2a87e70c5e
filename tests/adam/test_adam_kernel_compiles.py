"""kernels/adam.py's kernel compiles for a real GPU target (sm_90) on a machine without one."""
from helpers.sm90_compile import needs_triton, run_compile_script


@needs_triton
def test_adam_kernel_compiles_for_sm90():
    stdout = run_compile_script("compile_adam_for_gpu.py")
    assert "2 adam specializations for sm_90, 0 failed" in stdout
