"""kernels/step_losses.py's kernels compile for a real GPU target (sm_90) on a machine without
one (benchmarks/compile_step_losses_for_gpu.py, in a subprocess without TRITON_INTERPRET)."""
from helpers.sm90_compile import needs_triton, run_compile_script


@needs_triton
def test_step_loss_kernels_compile_for_sm90():
    stdout = run_compile_script("compile_step_losses_for_gpu.py")
    assert "compiled 15 step-loss specializations for sm_90, 0 failed" in stdout
