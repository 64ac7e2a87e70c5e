"""Compiling one Triton kernel specialization for an sm_90 GPU on a machine without one
(Triton's ahead-of-time path), shared by the benchmarks/compile_*_for_gpu.py scripts: each
failure is printed and counted, so a script reports every failing specialization, then fails."""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

SM90 = GPUTarget("cuda", 90, 32)

# The most shared memory one block of compute capability 9.0 (H100, H200) can use: 227 KiB,
# "maximum amount of shared memory per thread block" in the CUDA C++ Programming Guide's table of
# technical specifications per compute capability (cudaDevAttrMaxSharedMemoryPerBlockOptin).
# Triton's launcher compares compiled.metadata.shared with that attribute and raises
# OutOfResources at the first launch of a kernel that needs more.
SM90_MAX_SHARED_PER_BLOCK = 227 * 1024


def compile_for_sm90(kernel, signature: dict, constexprs: dict, label: str, options=None,
                     attrs=None):
    """The compiled kernel, or None after printing why ``label`` failed to compile or would
    fail to launch (more shared memory than a block has). ``options``: the launcher's
    num_warps / num_stages (Triton's defaults without); ``attrs``: the launch's
    specialization of its arguments (e.g. divisibility by 16)."""
    try:
        compiled = triton.compile(ASTSource(fn=kernel, signature=signature,
                                            constexprs=constexprs, attrs=attrs),
                                  target=SM90, options=options)
    except Exception as err:  # reported, and counted by the caller
        print(f"FAILED {label}: {err!r}"[:3000])
        return None
    if compiled.metadata.shared > SM90_MAX_SHARED_PER_BLOCK:
        print(f"FAILED {label} {options}: needs {compiled.metadata.shared} bytes of shared "
              f"memory, an sm_90 block has {SM90_MAX_SHARED_PER_BLOCK}")
        return None
    # a kernel with the PDL flag (kernels/pdl.py) waits for the previous grid exactly when on
    if "PDL" in kernel.arg_names and ("griddepcontrol.wait" in compiled.asm["ptx"]) != bool(
            constexprs.get("PDL")):
        print(f"FAILED {label}: griddepcontrol.wait present with PDL={constexprs.get('PDL')}")
        return None
    return compiled
