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
        # Triton's CompilationError repeats the kernel's source first; the reason is at its end
        # or in the exception it was raised from (e.g. a TypeError inside a called helper).
        root = err
        while root.__cause__ is not None or root.__context__ is not None:
            root = root.__cause__ or root.__context__
        reason = f"{type(err).__name__}: ...{str(err)[-1500:]}"
        if root is not err:
            reason += f"\n  raised from {root!r:.1500}"
        print(f"FAILED {label}: {reason}")
        return None
    if compiled.metadata.shared > SM90_MAX_SHARED_PER_BLOCK:
        print(f"FAILED {label} {options}: needs {compiled.metadata.shared} bytes of shared "
              f"memory, an sm_90 block has {SM90_MAX_SHARED_PER_BLOCK}")
        return None
    # a kernel with the PDL flag (kernels/pdl.py) waits for the previous grid and lets the next
    # one launch exactly when on
    if "PDL" in kernel.arg_names:
        for instruction in ("griddepcontrol.wait", "griddepcontrol.launch_dependents"):
            if (instruction in compiled.asm["ptx"]) != bool(constexprs.get("PDL")):
                print(f"FAILED {label}: {instruction} present with PDL={constexprs.get('PDL')}")
                return None
    return compiled
