"""The fused-convolution Triton kernels compile for a real GPU target (sm_90) on a machine
without one, as their launchers launch them (tiles, num_warps / num_stages, the specialization of
channels-last tensors), and fit an sm_90 block's shared memory: one specialization per code
path (benchmarks/compile_conv_fused_for_gpu.py)."""
from helpers.sm90_compile import needs_triton, run_compile_script


@needs_triton
def test_conv_fused_kernels_compile_for_sm90():
    assert "0 failed" in run_compile_script("compile_conv_fused_for_gpu.py", timeout=900)
