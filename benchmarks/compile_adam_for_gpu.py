"""Compile kernels/adam.py's kernel for an sm_90 GPU without one (Triton's ahead-of-time path):
the interpreter cannot see what only the real compiler rejects (float64 scalars, the squaring
loop, the bit-level bf16 rounding, the scalar atomic). Run without TRITON_INTERPRET; exits 1 on
any failure."""
import sys

from sm90 import compile_for_sm90

from fastp2p.kernels.adam import GPU_BLOCK, _adam_kernel

POINTERS = {"Master_ptr": "*fp32", "ExpAvg_ptr": "*fp32", "ExpAvgSq_ptr": "*fp32",
            "GradOwn_ptr": "*fp32", "Lr_ptr": "*fp32", "Ticket_ptr": "*i64",
            "Hyper_ptr": "*fp64"}


def main() -> int:
    failures = 0
    jobs = ((False, False), (True, True))  # (COPY_BF16, PDL): PDL as the bf16 captured step
    for copy_bf16, pdl in jobs:
        copy_type = "*bf16" if copy_bf16 else "*fp32"
        constexprs = {"COPY_BF16": copy_bf16, "BLOCK": GPU_BLOCK, "PDL": pdl}
        signature = {name: POINTERS.get(name, copy_type if name in ("GradCopied_ptr", "Copy_ptr")
                                        else "i64")
                     for name in _adam_kernel.arg_names}
        signature.update({name: "constexpr" for name in constexprs})
        compiled = compile_for_sm90(_adam_kernel, signature, constexprs,
                                    f"COPY_BF16={copy_bf16} PDL={pdl}")
        if compiled is not None and "atom" not in compiled.asm["ptx"]:
            print(f"FAILED COPY_BF16={copy_bf16}: no atomic in the PTX")
            compiled = None
        failures += compiled is None
    print(f"compiled {len(jobs)} adam specializations for sm_90, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
