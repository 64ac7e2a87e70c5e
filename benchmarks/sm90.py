"""Compiling one Triton kernel specialization for an sm_90 GPU on a machine without one
(Triton's ahead-of-time path), shared by the benchmarks/compile_*_for_gpu.py scripts: each
failure is printed and counted, so a script reports every failing specialization, then fails."""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

SM90 = GPUTarget("cuda", 90, 32)


def compile_for_sm90(kernel, signature: dict, constexprs: dict, label: str):
    """The compiled kernel, or None after printing why ``label`` failed to compile."""
    try:
        compiled = triton.compile(ASTSource(fn=kernel, signature=signature,
                                            constexprs=constexprs), target=SM90)
    except Exception as err:  # reported, and counted by the caller
        print(f"FAILED {label}: {err!r}"[:3000])
        return None
    # a kernel with the PDL flag (kernels/pdl.py) waits for the previous grid exactly when on
    if "PDL" in kernel.arg_names and ("griddepcontrol.wait" in compiled.asm["ptx"]) != bool(
            constexprs.get("PDL")):
        print(f"FAILED {label}: griddepcontrol.wait present with PDL={constexprs.get('PDL')}")
        return None
    return compiled
