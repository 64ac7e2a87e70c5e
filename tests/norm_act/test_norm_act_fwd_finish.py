"""The norm-act forward finishes its own statistics and counts BatchNorm's batches: on the split
path the statistics kernel's last program per channel block merges the splits into (mean, rstd)
and the running statistics (no finalize launch), and the kernel that updates the running
statistics (that one, or the one-pass kernel) adds 1 to num_batches_tracked. Checked through
the interpreter against the float64 reference on shapes that take each path (outputs
NaN-poisoned), bit for bit against the same merge run as a separate launch, and by counting
what one train-mode forward launches: its Triton kernels and no PyTorch op.
"""
import collections

import pytest
import torch

from fastp2p.nn.fused import norm_kwargs
from fastp2p.ops import norm_act
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.benchmark_scripts import load_benchmark_script
from helpers.launch_counting import count_launches
from helpers.tolerances import FP32_SINGLE_OP, assert_close, assert_storage_close
from helpers.triton_interpreter import KERNELS

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
if KERNELS is not None:  # TRITON_INTERPRET is set by now: the kernel below is interpreted
    import triton
    import triton.language as tl

    from fastp2p.kernels.norm_act_tiles import _finish_moments

    @triton.jit
    def _separate_finalize_kernel(PartMean_ptr, PartM2_ptr, Pivot_ptr, Mean_ptr, Rstd_ptr,
                                  RunMean_ptr, RunVar_ptr, C, num_groups, rows, rows_per_split,
                                  num_splits, eps, momentum, UPDATE_RUNNING: tl.constexpr,
                                  FINISH_G: tl.constexpr, FINISH_S: tl.constexpr,
                                  BLOCK_C: tl.constexpr):
        """The finalize launch the statistics kernel replaced (grid: group blocks x channel
        blocks), its body the same shared merge."""
        _finish_moments(PartMean_ptr, PartM2_ptr, Pivot_ptr, Mean_ptr, Rstd_ptr, RunMean_ptr,
                        RunVar_ptr, tl.program_id(0) * FINISH_G,
                        num_groups, tl.program_id(1).to(tl.int64) * BLOCK_C, C, rows,
                        rows_per_split, num_splits, eps, momentum, UPDATE_RUNNING, FINISH_G,
                        FINISH_S, BLOCK_C)


def _kernels():
    import fastp2p.kernels.norm_act
    return fastp2p.kernels.norm_act


# norm, shape, reduction programs (None: the interpreter's 1), one-pass allowed
PATHS = [
    ("batch", (2, 5, 24, 40), 6, False),       # 4 splits, one group
    ("batch", (2, 70, 6, 6), 6, False),        # 2 splits, 2 channel blocks
    ("batch", (2, 5, 6, 6), None, False),      # one split, one group: no counter
    ("instance", (3, 5, 24, 40), 6, False),    # splits and groups
    ("instance", (3, 70, 6, 6), None, False),  # groups and channel blocks, one split
    ("batch", (2, 5, 6, 6), None, True),       # one pass
    ("instance", (3, 5, 6, 6), None, True),    # one pass, several groups
]


def _path_id(path):
    norm, (n, c, h, w), programs, one_pass = path
    return f"{norm}-N{n}C{c}H{h}W{w}-{'one-pass' if one_pass else f'split{programs or 1}'}"


def _force_path(monkeypatch, programs, one_pass):
    kernels = _kernels()
    monkeypatch.setattr(kernels, "REDUCTION_PROGRAMS", programs)
    if not one_pass:
        monkeypatch.setattr(kernels, "ONE_PASS_MAX_ELEMENTS", 0)
    return kernels


def _make(shape, dtype, seed=0):
    """x (rounded to dtype, as float64), affine, running stats (float32 like a module's)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 0.5).to(dtype).double()
    c = shape[1]
    weight = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5
    bias = torch.rand(c, generator=gen, dtype=torch.float64) - 0.5
    running = (torch.randn(c, generator=gen), torch.rand(c, generator=gen) + 0.5)
    return x, weight.to(dtype), bias.to(dtype), running


def _fused_forward(kernels, norm, x64, weight, bias, running, dtype, training=True):
    """The launcher into a NaN-poisoned slice of a wider buffer: (out slice, mean, rstd,
    running_mean, running_var, num_batches_tracked), the last three updated copies."""
    x = x64.to(dtype).contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    out = torch.full((n, c + 3, h, w), float("nan"), dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    run_mean, run_var = (t.clone() for t in running)
    batches = torch.tensor(7, dtype=torch.int64)
    with_running = norm == "batch"
    mean, rstd = kernels.norm_act_fwd(
        x, weight, bias, run_mean if with_running else None, run_var if with_running else None,
        out, 2, norm=norm, training=training, momentum=0.1, eps=1e-5, activation="leaky_relu",
        slope=0.2, dropout_p=0.0, seed=0, offset=0, num_batches_tracked=batches)
    assert out[:, :2].isnan().all() and out[:, 2 + c:].isnan().all()
    return out[:, 2:2 + c], mean, rstd, run_mean, run_var, batches


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("path", PATHS, ids=[_path_id(p) for p in PATHS])
def test_forward_statistics_match_float64_reference(path, dtype, poisoned, monkeypatch):
    norm, shape, programs, one_pass = path
    kernels = _force_path(monkeypatch, programs, one_pass)
    x, weight, bias, running = _make(shape, dtype)
    ref_mean, ref_var = (t.double() for t in running)
    expected = norm_act_math(x, weight.double(), bias.double(),
                             ref_mean if norm == "batch" else None,
                             ref_var if norm == "batch" else None, norm=norm, training=True,
                             momentum=0.1, eps=1e-5, activation="leaky_relu", slope=0.2,
                             dropout_p=0.0, seed=0, offset=0)
    dims = (0, 2, 3) if norm == "batch" else (2, 3)
    var, mean = torch.var_mean(x, dim=dims, unbiased=False)
    got, got_mean, got_rstd, run_mean, run_var, batches = _fused_forward(
        kernels, norm, x, weight, bias, running, dtype)
    # float32, or 1.5x the storage rounding of bf16 / fp16; the statistics are float32 always
    assert_storage_close(got, expected, "output", interpreted=True)
    assert_close(got_mean, mean, FP32_SINGLE_OP, "mean")
    assert_close(got_rstd, torch.rsqrt(var + 1e-5), FP32_SINGLE_OP, "rstd")
    if norm == "batch":
        assert_close(run_mean, ref_mean, FP32_SINGLE_OP, "running_mean")
        assert_close(run_var, ref_var, FP32_SINGLE_OP, "running_var")
        assert batches.item() == 8
    else:  # nothing to count: an instance norm leaves the counter alone
        assert batches.item() == 7
    for device, (ring, _) in kernels._counter_rings.items():  # every counter left zeroed
        if device.type == "cpu":  # (other tests may have made one on the meta device)
            assert not ring.any()


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("path", [p for p in PATHS if p[0] == "batch"],
                         ids=[_path_id(p) for p in PATHS if p[0] == "batch"])
def test_eval_batch_norm_counts_nothing(path, monkeypatch):
    """Eval: the running statistics normalize, nothing is updated or counted."""
    norm, shape, programs, one_pass = path
    kernels = _force_path(monkeypatch, programs, one_pass)
    x, weight, bias, running = _make(shape, torch.float32)
    _, mean, _, run_mean, run_var, batches = _fused_forward(
        kernels, norm, x, weight, bias, running, torch.float32, training=False)
    assert batches.item() == 7
    assert torch.equal(run_mean, running[0]) and torch.equal(run_var, running[1])
    assert torch.equal(mean, running[0])


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("path", [p for p in PATHS if not p[3]],
                         ids=[_path_id(p) for p in PATHS if not p[3]])
def test_last_program_merge_is_bit_equal_to_a_separate_finalize(path, poisoned):
    """The statistics kernel's own merge against the finalize launch it replaced (the same
    shared merge, run afterwards from the partials the statistics kernel left): same bits."""
    norm, shape, programs, _ = path
    kernels = _kernels()
    x64, _, _, running = _make(shape, torch.float32)
    x = x64.float().contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    groups, rows = (n, h * w) if norm == "instance" else (1, n * h * w)
    block_hw, block_c = kernels._blocks(c, True)
    channel_blocks = triton.cdiv(c, block_c)
    kernels_programs = kernels.REDUCTION_PROGRAMS
    kernels.REDUCTION_PROGRAMS = programs
    try:
        splits, rows_per_split = kernels._splits(x, rows, groups, channel_blocks, block_hw)
    finally:
        kernels.REDUCTION_PROGRAMS = kernels_programs
    update = norm == "batch"
    part_mean = torch.empty(groups, splits, c)
    part_m2 = torch.empty_like(part_mean)
    outputs = [torch.empty(groups, c), torch.empty(groups, c), *(t.clone() for t in running)]
    separate = [torch.empty(groups, c), torch.empty(groups, c), *(t.clone() for t in running)]
    batches = torch.tensor(3, dtype=torch.int64)
    pivot = torch.empty(groups, c)
    shared = groups * splits > 1
    finish_g, finish_s = kernels._finish_tile(groups, splits, block_c)
    kernels._norm_act_stats_kernel[(groups * splits, channel_blocks)](
        x, part_mean, part_m2, pivot, *outputs, batches,
        kernels._counters(x.device, channel_blocks) if shared else x,
        c, h * w, w, rows, rows_per_split, splits, 1e-5, 0.1, *x.stride(),
        GROUP_IS_SAMPLE=norm == "instance", UPDATE_RUNNING=update, COUNT_BATCH=update,
        SHARED=shared, FINISH_G=finish_g, FINISH_S=finish_s, BLOCK_HW=block_hw,
        BLOCK_C=block_c)
    _separate_finalize_kernel[(triton.cdiv(groups, finish_g), channel_blocks)](
        part_mean, part_m2, pivot, *separate, c, groups, rows, rows_per_split, splits, 1e-5,
        0.1, UPDATE_RUNNING=update, FINISH_G=finish_g, FINISH_S=finish_s, BLOCK_C=block_c)
    assert splits > 1 or groups > 1 or path[2] is None
    for name, mine, theirs in zip(("mean", "rstd", "running_mean", "running_var"), outputs,
                                  separate):
        assert mine.isfinite().all(), name
        assert torch.equal(mine, theirs), name
    assert batches.item() == (4 if update else 3)


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("path", PATHS, ids=[_path_id(p) for p in PATHS])
def test_forward_is_deterministic(path, monkeypatch):
    """Fixed-order merges: two runs give the same bits (output, statistics, running ones)."""
    norm, shape, programs, one_pass = path
    kernels = _force_path(monkeypatch, programs, one_pass)
    x, weight, bias, running = _make(shape, torch.float32)
    first = _fused_forward(kernels, norm, x, weight, bias, running, torch.float32)
    second = _fused_forward(kernels, norm, x, weight, bias, running, torch.float32)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
@pytest.mark.parametrize("path", [p for p in PATHS if p[0] == "batch"],
                         ids=[_path_id(p) for p in PATHS if p[0] == "batch"])
def test_train_batch_norm_forward_launches_no_pytorch_op(path, grad, monkeypatch):
    """One train-mode BatchNorm forward as the fused networks run it (norm_kwargs of the
    module, then norm_act) is its Triton kernels alone: statistics + normalize on the split
    path (the old code added a finalize kernel), one kernel on the one-pass path, and no
    PyTorch op (the old code launched num_batches_tracked.add_). Without autograd the plan
    path runs, which counts the batch with add_ (the inference plans count no batch)."""
    norm, shape, programs, one_pass = path
    monkeypatch.setenv("FASTP2P_BACKEND", "triton")
    kernels = _force_path(monkeypatch, programs, one_pass)
    bn = torch.nn.BatchNorm2d(shape[1]).train()
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
    norm_act(x, **norm_kwargs(bn), activation="leaky_relu")  # the counter ring's one zeros
    # every launched kernel (not the jitted helpers they call)
    counter = count_launches(monkeypatch, kernels, [
        name for name in dir(kernels)
        if name.startswith("_norm_act_") and name.endswith("_kernel")])
    with counter, torch.set_grad_enabled(grad):
        y = norm_act(x, **norm_kwargs(bn), activation="leaky_relu")
    assert y.requires_grad == grad
    assert y.isfinite().all() and bn.num_batches_tracked.item() == 2
    expected = (collections.Counter(_norm_act_fwd_one_pass_kernel=1) if one_pass else
                collections.Counter(_norm_act_stats_kernel=1, _norm_act_fwd_kernel=1))
    assert counter.launches == expected
    if grad:
        assert not counter.ops, f"PyTorch ops besides the Triton kernels: {dict(counter.ops)}"
    else:
        assert counter.ops == collections.Counter(add_=1)


@pytest.mark.interpreter
def test_no_pytorch_op_at_any_real_layer_with_gpu_decisions(monkeypatch):
    """Every norm layer of U-Net-256 and the PatchGAN at batch 1 and 64, batch and instance
    norm, with the splits the launcher picks for an H200 (kernels stubbed, meta tensors): a
    training forward, its arguments built as the fused networks build them, is one or two
    Triton launches and no PyTorch op."""
    script = load_benchmark_script("count_norm_act_fwd_launches")
    bwd_script = load_benchmark_script("count_norm_act_bwd_ops")
    # a ring of this test's own: no meta-device ring is left for other tests' checks to read
    monkeypatch.setattr(_kernels(), "_counter_rings", {})
    with bwd_script.gpu_decisions() as launches:
        _kernels()._counters(torch.device("meta"), 1)  # the ring's one allocation per device
        for norm in ("batch", "instance"):
            for batch in (1, 64):
                for net, module, shape in script.norm_modules(norm, batch):
                    before = launches[0]
                    ops = script.count_forward(module, shape)
                    assert not ops, f"{net} {norm} {shape}: {dict(ops)}"
                    assert 1 <= launches[0] - before <= 2
