"""Compile kernels/step_losses.py's kernels for an sm_90 GPU without one (Triton's ahead-of-time
path): the interpreter cannot see what only the real compiler rejects (the branch on the program
id over two ranges, scalar loads and stores of the tally, int64 counters). Every GAN mode, both
second ranges (GAN / L1), the dtypes the engine passes (float32, and bfloat16 under autocast),
with and without a tally. Run without TRITON_INTERPRET; exits 1 on any failure."""
import itertools
import sys

from sm90 import compile_for_sm90

from fastp2p.kernels.step_losses import (BLOCK, FINISH_BLOCK, _finish_step_losses_kernel,
                                         _step_losses_kernel)

FLOATS = {"a_target", "b_target", "inv_a_numel", "inv_b_numel", "a_weight", "b_weight",
          "a_count", "b_count", "b_factor", "total_factor"}
POINTERS = {"Partial_ptr": "*fp32", "Losses_ptr": "*fp32", "Sums_ptr": "*fp32",
            "Step_ptr": "*i64", "First_ptr": "*i64", "Y_ptr": "*fp32"}


def _signature(kernel, constexprs, dtype):
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = POINTERS.get(name, f"*{dtype}")
        else:
            signature[name] = "fp32" if name in FLOATS else "i32"
    return signature


def main() -> int:
    # PDL (kernels/pdl.py) on in the bf16 / tallied variants, as the captured step would run
    jobs = [(_step_losses_kernel, dict(MODE=mode, B_IS_L1=l1, BLOCK=BLOCK, PDL=dtype == "bf16"),
             dtype)
            for mode, l1, dtype in itertools.product((0, 1, 2), (False, True), ("fp32", "bf16"))]
    jobs += [(_finish_step_losses_kernel,
              dict(TALLY=tally, ADVANCE_STEP=advance, FINISH_BLOCK=FINISH_BLOCK, PDL=tally),
              "fp32")
             for tally, advance in ((False, False), (True, False), (True, True))]
    failures = 0
    for kernel, constexprs, dtype in jobs:
        failures += compile_for_sm90(kernel, _signature(kernel, constexprs, dtype), constexprs,
                                     f"{kernel.fn.__name__} {dtype} {constexprs}") is None
    print(f"compiled {len(jobs)} step-loss specializations for sm_90, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
