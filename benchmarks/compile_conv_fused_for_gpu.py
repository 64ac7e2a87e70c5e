"""Compile the fused-convolution Triton kernels for an sm_90 GPU without one (Triton's
ahead-of-time path), as benchmarks/compile_kernels_for_gpu.py does for the norm-act kernels: the
interpreter cannot see what only the real compiler rejects (types, constexpr handling, dot
shapes and dtypes), nor a kernel that needs more shared memory than a block has. Each
specialization is compiled as its launcher launches it on a GPU: its tiles (gemm_blocks), its
num_warps / num_stages (the launchers' launch-options functions) and the argument
specialization of channels-last tensors (``_specialization``). Run without TRITON_INTERPRET;
exits 1 on any failure. ``--all`` compiles every combination in bf16, fp16 and fp32, otherwise
one per code path in bf16 (and one forward and one wgrad in fp32).
"""
import itertools
import sys

import torch
from sm90 import compile_for_sm90

from fastp2p.kernels import conv_fused, conv_fused_wgrad, conv_stats_finish

_GPU = torch.device("cuda")  # only its type is read: no GPU needed
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

_FLOAT_ARGS = {"slope", "keep_scale", "eps", "momentum"}
_STORAGE_PTRS = {"A_ptr", "B_ptr", "W_ptr", "Y_ptr", "X_ptr", "FoldA_ptr", "G_ptr", "FoldY_ptr"}
_RNG_ARGS = {"SeedA", "OffsetA", "SeedB", "OffsetB", "SeedX", "OffsetX", "Seed", "Offset"}


def _specialization(kernel, constexprs, storage_dtype):
    """(signature, constexprs, attrs) of a launch on channels-last tensors whose sizes are
    multiples of 16 (the layers the large tiles are for). Triton's launcher specializes every
    16-byte aligned pointer and integer divisible by 16 (``tt.divisibility``) and turns an
    integer equal to 1 into a constant: here the channel strides, and a channels-last weight's
    dim 1 (its output channels in a transposed launch: a transposed forward or a direct
    convolution's dgrad). The generic signature hides what that enables: vectorized channel
    loads, pipelined through shared memory (wgrad with an instance-norm prologue and fold at 3
    stages: 393216 bytes so, 294912 generic)."""
    unit_strides = {"sac", "sfc", "sbc", "sxc", "syc", "sgc",
                    "swo" if constexprs.get("TRANSPOSED") else "swi"}
    constexprs = dict(constexprs, **{n: 1 for n in kernel.arg_names if n in unit_strides})
    signature, attrs = {}, {}
    for index, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = f"*{storage_dtype}" if name in _STORAGE_PTRS else "*fp32"
        elif name in _RNG_ARGS:
            signature[name] = "*i64"
        elif name in _FLOAT_ARGS:
            signature[name] = "fp32"
        elif name == "threshold":
            signature[name] = "i64"
        else:
            signature[name] = "i32"
        if signature[name] == "i32" or name.endswith("_ptr"):
            attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


_DIRECT_S2 = dict(STRIDE=2, PADDING=1, KH=4, KW=4, TRANSPOSED=False)
_DIRECT_S1 = dict(_DIRECT_S2, STRIDE=1)
_TRANSPOSED = dict(_DIRECT_S2, TRANSPOSED=True)
_NO_DGRAD = dict(DGRAD=False, AFFINE_X=0, ACTIVATION_X=0, DROPOUT_X=False)
_NO_B = dict(TWO_SOURCES=False, AFFINE_B=0, ACTIVATION_B=0, DROPOUT_B=False)


def _forward(geometry, *, affine, activation, partials, bias, two=False, dropout_b=False,
             tanh=False):
    sources = dict(TWO_SOURCES=True, AFFINE_B=affine, ACTIVATION_B=activation,
                   DROPOUT_B=dropout_b) if two else _NO_B
    return conv_fused._conv_fused_kernel, dict(
        geometry, **sources, **_NO_DGRAD, AFFINE_A=affine, ACTIVATION_A=activation,
        DROPOUT_A=False, FOLD_A=0, HAS_BIAS=bias, TANH=tanh, PARTIALS=partials)


def _fold(fold):
    """(FOLD code, affine code of its alpha) of ``fold``: 0 none, 1 / 2 the statistics' share
    per (image, channel) / per channel, "tanh" an output tanh's derivative."""
    return (2, 0) if fold == "tanh" else (int(fold > 0), fold)


def _dgrad(geometry, *, affine, activation, dropout, fold):
    code, fold_affine = _fold(fold)
    return conv_fused._conv_fused_kernel, dict(
        geometry, **_NO_B, AFFINE_A=fold_affine, ACTIVATION_A=0, DROPOUT_A=False, FOLD_A=code,
        HAS_BIAS=False, TANH=False, DGRAD=True, PARTIALS=affine > 0, AFFINE_X=affine,
        ACTIVATION_X=activation, DROPOUT_X=dropout)


def _wgrad(geometry, *, affine, activation, dropout, fold):
    code, fold_affine = _fold(fold)
    return conv_fused_wgrad._conv_wgrad_kernel, dict(
        geometry, AFFINE=affine, ACTIVATION=activation, DROPOUT=dropout, FOLD=code,
        AFFINE_FOLD=fold_affine)


def _bias_grad(fold):
    code, fold_affine = _fold(fold)
    return conv_fused_wgrad._bias_grad_kernel, dict(FOLD=code, AFFINE_FOLD=fold_affine,
                                                    BLOCK_P=128, BLOCK_CO=64)


def _jobs(compile_all: bool):
    """The launchers' specializations: every combination with ``compile_all``, else one per
    code path (each prologue / epilogue / fold mode, both directions, both source counts)."""
    if compile_all:
        for geo, two, affine, act, dropout, flag in itertools.product(
                (_DIRECT_S2, _DIRECT_S1, _TRANSPOSED), (False, True), (0, 1, 2), (0, 1, 2),
                (False, True), (False, True)):
            yield _forward(geo, affine=affine, activation=act, partials=flag, bias=not flag,
                           two=two, dropout_b=dropout, tanh=not flag)
            for fold in (0, 1, 2, "tanh"):
                yield _dgrad(geo, affine=affine, activation=act, dropout=dropout, fold=fold)
                yield _wgrad(geo, affine=affine, activation=act, dropout=dropout, fold=fold)
    else:
        yield _forward(_DIRECT_S2, affine=0, activation=0, partials=True, bias=True)
        yield _forward(_DIRECT_S2, affine=1, activation=2, partials=True, bias=False)
        yield _forward(_DIRECT_S1, affine=2, activation=2, partials=False, bias=True)
        yield _forward(_TRANSPOSED, affine=1, activation=1, partials=True, bias=True, two=True,
                       dropout_b=True)
        yield _dgrad(_TRANSPOSED, affine=2, activation=2, dropout=False, fold=2)
        yield _dgrad(_DIRECT_S2, affine=1, activation=1, dropout=True, fold=1)
        yield _dgrad(_DIRECT_S1, affine=0, activation=0, dropout=False, fold=0)
        yield _wgrad(_DIRECT_S2, affine=1, activation=2, dropout=False, fold=1)
        yield _wgrad(_TRANSPOSED, affine=2, activation=1, dropout=True, fold=2)
        # the U-Net's output layer: two ReLU'd sources, bias, tanh; its backward's tanh fold
        yield _forward(_TRANSPOSED, affine=1, activation=1, partials=False, bias=True,
                       two=True, tanh=True)
        yield _dgrad(_DIRECT_S2, affine=1, activation=1, dropout=False, fold="tanh")
        yield _wgrad(_TRANSPOSED, affine=1, activation=1, dropout=False, fold="tanh")
    for fold in (0, 1, 2, "tanh"):
        yield _bias_grad(fold)
    for affine, update in ((False, False), (True, True)):
        yield conv_stats_finish._conv_stats_finish_kernel, dict(
            FINISH=True, AFFINE=affine, UPDATE_RUNNING=update, BLOCK_P=64, BLOCK_C=64)
    for block_c in (16, 64):  # conv_stats_finish's chunk merges (its split of many tiles)
        yield conv_stats_finish._conv_stats_finish_kernel, dict(
            FINISH=False, AFFINE=False, UPDATE_RUNNING=False, BLOCK_P=64, BLOCK_C=block_c)


def _blocks(kernel, dtype):
    """The tiles conv_fused.gemm_blocks picks on a GPU for a layer larger than its largest
    tiles (the launchers' arguments to it: pixels x output channels x input channels for the
    forward / dgrad kernel, input x output channels x 64 pixels for wgrad)."""
    if kernel is conv_fused._conv_fused_kernel:
        names, depth = ("BLOCK_M", "BLOCK_N", "BLOCK_K"), 1024
    elif kernel is conv_fused_wgrad._conv_wgrad_kernel:
        names, depth = ("BLOCK_CI", "BLOCK_CO", "BLOCK_P"), 64
    else:
        return {}
    return dict(zip(names, conv_fused.gemm_blocks(1024, 1024, depth, _DTYPES[dtype], _GPU)))


_LAUNCH_OPTIONS = {conv_fused._conv_fused_kernel: conv_fused.conv_fused_launch_options,
                   conv_fused_wgrad._conv_wgrad_kernel: conv_fused_wgrad.conv_wgrad_launch_options}


def main(compile_all: bool) -> int:
    jobs = list(_jobs(compile_all))
    failures, largest = 0, (0, "")
    for index, (kernel, constexprs) in enumerate(jobs):
        # float32 (the IEEE-dot proof path) once per GEMM kernel unless --all: compiles are slow
        dtypes = ("bf16", "fp16", "fp32") if compile_all else (
            ("bf16", "fp32") if index in (0, 7) else ("bf16",))
        for dtype in dtypes:
            constexprs = dict(constexprs, **_blocks(kernel, dtype))
            # the other kernels' launchers leave both to Triton's defaults
            options = _LAUNCH_OPTIONS[kernel](constexprs, _GPU) if kernel in _LAUNCH_OPTIONS \
                else None
            label = f"{kernel.fn.__name__} {dtype} {constexprs}"
            signature, specialized, attrs = _specialization(kernel, constexprs, dtype)
            compiled = compile_for_sm90(kernel, signature, specialized, label, options, attrs)
            failures += compiled is None
            if compiled is not None:
                largest = max(largest, (compiled.metadata.shared, f"{label} {options}"))
    print(f"largest shared memory: {largest[0]} bytes, {largest[1]}")
    print(f"compiled {len(jobs)} fused-conv kernel specializations for sm_90, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main("--all" in sys.argv))
