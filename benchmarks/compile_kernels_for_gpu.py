"""Compile the Triton kernels for an sm_90 GPU without one (Triton's ahead-of-time path).

The interpreter runs kernels as numpy code, so it cannot see errors that only the real compiler
raises (types, constexpr handling, layouts). This script compiles each kernel specialization
the launchers can request down to a cubin. ``--all`` compiles every combination, otherwise a
spread-out subset. Run it without TRITON_INTERPRET (tests/backends/test_kernels_compile.py
does so in a subprocess); exits 1 on any failure.
"""
import itertools
import sys

from sm90 import compile_for_sm90

from fastp2p.kernels import losses, norm_act

_FLOAT_ARGS = {"slope", "keep_scale", "eps", "momentum", "inv_group_count", "inv_numel", "target"}
_ACTIVATION_PTRS = {"X_ptr", "Y_ptr", "G_ptr", "DX_ptr", "Grad_ptr"}


def _signature(kernel, constexprs, activation_dtype):
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "Counter_ptr":
            signature[name] = "*i32"
        elif name == "Batches_ptr":
            signature[name] = "*i64"
        elif name.endswith("_ptr"):
            signature[name] = f"*{activation_dtype}" if name in _ACTIVATION_PTRS else "*fp32"
        elif name in _FLOAT_ARGS:
            signature[name] = "fp32"
        elif name in ("Seed", "Offset"):
            signature[name] = "*i64" if constexprs.get("RNG_IN_MEMORY") else "i64"
        elif name == "threshold":
            signature[name] = "i64"
        else:
            signature[name] = "i32"
    return signature


def _jobs():
    for norm, act, affine, dropout, in_memory in itertools.product(
            (0, 1, 2), (0, 1, 2), (False, True), (False, True), (False, True)):
        flags = dict(AFFINE=affine, ACTIVATION=act, DROPOUT=dropout, RNG_IN_MEMORY=in_memory,
                     BLOCK_HW=32, BLOCK_C=64, PDL=in_memory)  # PDL: as the captured step
        yield norm_act._norm_act_fwd_kernel, dict(flags, NORM=norm)
        yield norm_act._norm_act_bwd_reduce_kernel, dict(flags, NORM=norm, BATCH_STATS=norm > 0,
                                                         SHARED=not dropout, FINISH_G=4,
                                                         FINISH_S=8)
        yield norm_act._norm_act_bwd_kernel, dict(flags, NORM=norm, BATCH_STATS=norm > 0)
        yield norm_act._norm_act_bwd_one_pass_kernel, dict(flags, NORM=norm, BATCH_STATS=norm > 0,
                                                           SHARED=not in_memory, FINISH_G=8)
        if norm:
            yield norm_act._norm_act_fwd_one_pass_kernel, dict(
                flags, GROUP_IS_SAMPLE=norm == 1, UPDATE_RUNNING=norm == 2,
                COUNT_BATCH=norm == 2 and affine)
    for group_is_sample, update, count, shared in (
            (True, False, False, True), (True, False, False, False), (False, False, False, True),
            (False, True, False, True), (False, True, True, True), (False, True, True, False)):
        yield norm_act._norm_act_stats_kernel, dict(
            GROUP_IS_SAMPLE=group_is_sample, UPDATE_RUNNING=update, COUNT_BATCH=count,
            SHARED=shared, FINISH_G=2 if group_is_sample else 1, FINISH_S=16 if group_is_sample
            else 32, BLOCK_HW=32, BLOCK_C=64, PDL=group_is_sample)
    for mode in (0, 1, 2):
        yield losses._gan_loss_fwd_kernel, dict(MODE=mode, BLOCK=1024, PDL=mode == 1)
    for pdl in (False, True):
        yield losses._l1_loss_fwd_kernel, dict(BLOCK=1024, PDL=pdl)


def main(compile_all: bool) -> int:
    jobs = list(_jobs())
    if not compile_all:
        jobs = jobs[::9] + jobs[-6:]
    failures = 0
    for kernel, constexprs in jobs:
        for dtype in ("bf16",) if not compile_all else ("bf16", "fp32", "fp16"):
            compiled = compile_for_sm90(kernel, _signature(kernel, constexprs, dtype), constexprs,
                                        f"{kernel.fn.__name__} {dtype} {constexprs}")
            failures += compiled is None
    print(f"compiled {len(jobs)} kernel specializations for sm_90, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main("--all" in sys.argv))
