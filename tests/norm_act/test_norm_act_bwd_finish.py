"""The norm-act backward finishes its own reductions: the reduce kernel's last program per
channel block adds the split partials into the group sums and grad_weight / grad_bias, the
one-pass kernel's last program adds grad_weight / grad_bias over the groups; both write the
parameters' dtype. Checked against the float64 reference through the interpreter on shapes
that take the multi-split and multi-group paths (every output and gradient NaN-poisoned
first), and by counting the ATen ops one backward dispatches besides the Triton kernels.
"""

import pytest
import torch

from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.benchmark_scripts import load_benchmark_script
from helpers.launch_counting import count_launches
from helpers.tolerances import assert_storage_close
from helpers.triton_interpreter import KERNELS

needs_triton = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Allocations and views launch nothing.
def _kernels():
    import fastp2p.kernels.norm_act
    return fastp2p.kernels.norm_act


# norm, shape, affine, reduction programs (None: the interpreter's 1), one-pass allowed
PATHS = [
    ("batch", (2, 5, 24, 40), True, 6, False),        # several splits, one group
    ("instance", (3, 5, 24, 40), True, 6, False),     # several splits and groups
    ("instance", (3, 70, 6, 6), True, None, False),   # several groups and channel blocks, 1 split
    ("instance", (3, 5, 6, 6), True, None, True),     # one pass, several groups
    ("instance", (3, 70, 4, 4), False, 6, False),     # no affine: group sums only
    ("batch", (2, 5, 6, 6), True, None, True),        # one pass, one group: no counter
]


def _path_id(path):
    norm, (n, c, h, w), affine, programs, one_pass = path
    return (f"{norm}-N{n}C{c}H{h}W{w}-{'affine' if affine else 'plain'}-"
            f"{'one-pass' if one_pass else f'split{programs or 1}'}")


def _make(norm, shape, affine, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 0.5
    grad = torch.randn(shape, generator=gen, dtype=torch.float64)
    weight = bias = None
    if affine:
        weight = torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5
        bias = torch.rand(shape[1], generator=gen, dtype=torch.float64) - 0.5
    return x, grad, weight, bias


def _reference(norm, x, grad, weight, bias, kwargs):
    x = x.clone().requires_grad_()
    w = None if weight is None else weight.clone().requires_grad_()
    b = None if bias is None else bias.clone().requires_grad_()
    y = norm_act_math(x, w, b, None, None, norm=norm, training=True, momentum=0.1, eps=1e-5,
                      **kwargs)
    y.backward(grad)
    return y.detach(), [x.grad] + ([] if w is None else [w.grad, b.grad])


def _fused(norm, x64, grad64, weight, bias, kwargs, dtype):
    """Forward into a NaN-poisoned slice of a wider buffer, then the backward launcher; the
    parameters in ``dtype`` as well (their gradients are written in it)."""
    kernels = _kernels()
    x = x64.to(dtype).contiguous(memory_format=torch.channels_last)
    w = None if weight is None else weight.to(dtype)
    b = None if bias is None else bias.to(dtype)
    n, c, h, wd = x.shape
    out = torch.full((n, c + 3, h, wd), float("nan"), dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    mean, rstd = kernels.norm_act_fwd(x, w, b, None, None, out, 2, norm=norm, training=True,
                                      momentum=0.1, eps=1e-5, **kwargs)
    assert out[:, :2].isnan().all() and out[:, 2 + c:].isnan().all()
    grads = kernels.norm_act_bwd(grad64.to(dtype), x, w, b, mean, rstd, norm=norm, **kwargs)
    if w is not None:
        assert grads[1].dtype == dtype and grads[2].dtype == dtype
    return out[:, 2:2 + c], [g for g in grads if g is not None]


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("path", PATHS, ids=[_path_id(p) for p in PATHS])
def test_backward_sums_match_float64_reference(path, dtype, poisoned, monkeypatch):
    norm, shape, affine, programs, one_pass = path
    kernels = _kernels()
    monkeypatch.setattr(kernels, "REDUCTION_PROGRAMS", programs)
    if not one_pass:
        monkeypatch.setattr(kernels, "ONE_PASS_MAX_ELEMENTS", 0)
    # the reference sees the inputs as rounded to dtype: what is left is the kernels' error
    x, grad, weight, bias = (None if t is None else t.to(dtype).double()
                             for t in _make(norm, shape, affine))
    kwargs = dict(activation="leaky_relu", slope=0.2, dropout_p=0.0, seed=5, offset=3)
    expected, expected_grads = _reference(norm, x, grad, weight, bias, kwargs)
    got, got_grads = _fused(norm, x, grad, weight, bias, kwargs, dtype)
    assert len(got_grads) == len(expected_grads)
    names = ("output", "grad x", "grad weight", "grad bias")
    for name, g, e in zip(names, [got] + got_grads, [expected] + expected_grads):
        # float32, or 1.5x the storage rounding of bf16 / fp16
        assert_storage_close(g, e, name, interpreted=True)
    # every arrival counter is left zeroed (the next call, or a graph replay, relies on it)
    for ring, _ in kernels._counter_rings.values():
        assert not ring.any()


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("finish_tile", [8, 16, 32])
@pytest.mark.parametrize("path", PATHS[:5], ids=[_path_id(p) for p in PATHS[:5]])
def test_small_finish_tiles_cover_every_partial(path, finish_tile, poisoned, monkeypatch):
    """Last-program reductions over several tiles of groups and of splits."""
    monkeypatch.setattr(_kernels(), "_FINISH_TILE", finish_tile)
    test_backward_sums_match_float64_reference(path, torch.float32, None, monkeypatch)


@needs_triton
@pytest.mark.interpreter
def test_backward_is_deterministic(monkeypatch):
    """Fixed-order sums: two runs give the same bits."""
    kernels = _kernels()
    monkeypatch.setattr(kernels, "REDUCTION_PROGRAMS", 6)
    monkeypatch.setattr(kernels, "ONE_PASS_MAX_ELEMENTS", 0)
    x, grad, weight, bias = _make("instance", (3, 5, 24, 40), True)
    kwargs = dict(activation="relu", slope=0.0, dropout_p=0.0, seed=0, offset=0)
    first = _fused("instance", x, grad, weight, bias, kwargs, torch.float32)[1]
    second = _fused("instance", x, grad, weight, bias, kwargs, torch.float32)[1]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@needs_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("path", PATHS, ids=[_path_id(p) for p in PATHS])
def test_backward_launches_no_pytorch_op(path, param_dtype, monkeypatch):
    """One backward call runs its Triton kernels and nothing else: no sum over splits or
    groups, no cast of grad_weight / grad_bias (the old code launched up to 2 sums and 2
    casts)."""
    norm, shape, affine, programs, one_pass = path
    kernels = _kernels()
    monkeypatch.setattr(kernels, "REDUCTION_PROGRAMS", programs)
    if not one_pass:
        monkeypatch.setattr(kernels, "ONE_PASS_MAX_ELEMENTS", 0)
    x64, grad64, weight, bias = _make(norm, shape, affine)
    x = x64.float()
    w = None if weight is None else weight.to(param_dtype)
    b = None if bias is None else bias.to(param_dtype)
    kwargs = dict(activation="relu", slope=0.0, dropout_p=0.0, seed=0, offset=0)
    mean, rstd = kernels.norm_act_fwd(x, w, b, None, None, torch.empty_like(x), 0, norm=norm,
                                      training=True, momentum=0.1, eps=1e-5, **kwargs)
    grad = grad64.float()
    kernels.norm_act_bwd(grad, x, w, b, mean, rstd, norm=norm, **kwargs)  # allocates the ring
    counter = count_launches(monkeypatch, kernels, ("_norm_act_bwd_reduce_kernel",
                                                    "_norm_act_bwd_kernel",
                                                    "_norm_act_bwd_one_pass_kernel"))
    with counter:
        grads = kernels.norm_act_bwd(grad, x, w, b, mean, rstd, norm=norm, **kwargs)
    assert not counter.ops, f"PyTorch ops besides the Triton kernels: {dict(counter.ops)}"
    assert grads[0].isfinite().all()


@pytest.mark.interpreter
@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_no_pytorch_op_at_any_real_layer_with_gpu_decisions(param_dtype):
    """Every norm layer of U-Net-256 and the PatchGAN at batch 1 and 64, batch and instance
    norm (affine or not), with the splits the launcher picks for an H200: the backward is its
    one or two Triton launches alone (kernels stubbed, meta tensors: no GPU needed)."""
    script = load_benchmark_script("count_norm_act_bwd_ops")
    with script.gpu_decisions() as launches:
        _kernels()._counters(torch.device("meta"), 1)  # the ring's one allocation per device
        for norm, affine in (("batch", True), ("instance", False), ("instance", True)):
            for batch in (1, 64):
                for net, shape in script.norm_layer_shapes(norm, batch):
                    before = launches[0]
                    ops = script.count_backward(shape, norm, torch.bfloat16, param_dtype,
                                                affine=affine)
                    assert not ops, f"{net} {norm} {shape}: {dict(ops)}"
                    assert 1 <= launches[0] - before <= 2
