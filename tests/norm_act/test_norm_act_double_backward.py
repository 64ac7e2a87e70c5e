"""Double backward of the fused norm-act op (norm_act / norm_act_concat): a backward built with
create_graph=True, then a loss of its gradients back-propagated, vs the same through
``norm_act_math`` in float64 with the same dropout mask — every first gradient and every leaf's
second gradient (x, weight, bias, skip, and the first backward's grad_outputs), float32 on each
CPU backend; and ``torch.autograd.gradgradcheck`` in float64 (the reference backend). Before the
fix the kernels' gradients were constants of the graph (None second gradients) and the float64
path differentiated detached statistics (10-20% off)."""
import importlib

import pytest
import torch

from fastp2p.ops import norm_act, norm_act_concat
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.tolerances import FP32_SINGLE_OP, assert_close

# norm, training, running statistics, activation, affine, dropout_p, skip
CASES = [
    ("instance", True, False, "leaky_relu", True, 0.0, False),
    ("instance", True, False, "relu", False, 0.5, True),
    ("batch", True, True, "relu", True, 0.5, False),
    ("batch", False, True, "leaky_relu", True, 0.0, True),
    ("batch", True, False, "none", True, 0.0, False),
    ("none", True, False, "leaky_relu", True, 0.0, False),
    ("none", True, False, "leaky_relu", False, 0.5, False),  # saves its output, not x
    ("none", True, False, "relu", False, 0.0, True),
]


def _case_id(case):
    norm, training, running, act, affine, p, skip = case
    mode = "" if norm != "batch" else ("-train" if training else "-eval")
    return (f"{norm}{mode}{'-running' if running else ''}-{act}-"
            f"{'affine' if affine else 'plain'}-p{p}{'-skip' if skip else ''}")


def _inputs(case, dtype, shape=(2, 3, 4, 5)):
    """The leaves (x, weight, bias, skip, v: the first backward's grad_outputs) and the
    running statistics, random, in ``dtype``."""
    norm, _, running, _, affine, _, skip = case
    g = torch.Generator().manual_seed(3)
    n, c, h, w = shape

    def rand(*size, low=-1.0, high=1.0):
        return (torch.rand(size, generator=g, dtype=torch.float64) * (high - low) + low).to(dtype)

    leaves = dict(x=rand(n, c, h, w))
    if affine:
        leaves.update(weight=rand(c, low=0.5, high=1.5), bias=rand(c, low=-0.5, high=0.5))
    if skip:
        leaves["skip"] = rand(n, 2, h, w)
    leaves["v"] = rand(n, c + (2 if skip else 0), h, w)
    stats = (rand(c, low=-0.3, high=0.3), rand(c, low=0.5, high=1.5)) if running else None
    return {k: t.requires_grad_() for k, t in leaves.items()}, stats


def _settings(case):
    norm, training, _, act, _, p, _ = case
    return dict(norm=norm, training=training, activation=act, slope=0.2, dropout_p=p)


def _ours(case, leaves, stats):
    kwargs = dict(_settings(case), seed=21, offset=40)
    args = (leaves["x"], leaves.get("weight"), leaves.get("bias"),
            *(stats if stats is not None else (None, None)))
    if "skip" in leaves:
        return norm_act_concat(leaves["skip"], *args, **kwargs)
    return norm_act(*args, **kwargs)


def _theirs(case, leaves, stats):
    y = norm_act_math(leaves["x"], leaves.get("weight"), leaves.get("bias"),
                      *(stats if stats is not None else (None, None)), momentum=0.1, eps=1e-5,
                      seed=21, offset=40, **_settings(case))
    if "skip" in leaves:
        y = torch.cat([torch.relu(leaves["skip"]), y], 1)
    return y


def _double_backward(op, case, leaves, stats):
    """(first gradients, second gradients of every leaf) of a loss of the first gradients that
    is not linear in them."""
    y = op(case, leaves, stats)
    inputs = [t for k, t in leaves.items() if k != "v"]
    firsts = torch.autograd.grad(y, inputs, leaves["v"].to(y.dtype), create_graph=True)
    u = torch.Generator().manual_seed(4)
    loss = sum((f.double() * (torch.rand(f.shape, generator=u, dtype=torch.float64) - 0.5)).sum()
               + f.double().square().sum() for f in firsts)
    seconds = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return firsts, seconds


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_norm_act_double_backward_float32_vs_float64_math(backend, case):
    leaves, stats = _inputs(case, torch.float32)
    firsts, seconds = _double_backward(_ours, case, leaves, stats)
    leaves64 = {k: t.detach().double().requires_grad_() for k, t in leaves.items()}
    stats64 = None if stats is None else tuple(t.double() for t in _inputs(case, torch.float32)[1])
    ref_firsts, ref_seconds = _double_backward(_theirs, case, leaves64, stats64)
    for name, actual, expected in zip(leaves, firsts, ref_firsts):
        assert_close(actual, expected, FP32_SINGLE_OP, f"{backend} first grad {name}")
    scale = max(t.abs().max().item() for t in ref_seconds if t is not None)
    for name, actual, expected in zip(leaves, seconds, ref_seconds):
        if expected is None or expected.abs().max().item() <= 1e-10 * scale:
            # Analytically 0 (the bias's, and the skip's through relu: piecewise linear).
            assert actual is None or actual.abs().max() <= FP32_SINGLE_OP * scale, name
            continue
        assert actual is not None, f"{backend}: no second gradient for {name}"
        assert_close(actual, expected, FP32_SINGLE_OP, f"{backend} second grad {name}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_norm_act_gradgradcheck_float64(monkeypatch, case):
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    leaves, stats = _inputs(case, torch.float64, shape=(2, 2, 3, 3))
    names = [k for k in leaves if k != "v"]

    def op(*tensors):
        return _ours(case, dict(zip(names, tensors)), stats)

    assert torch.autograd.gradgradcheck(op, [leaves[k] for k in names])


def test_only_a_backward_that_builds_a_graph_leaves_the_kernels(monkeypatch):
    """The first-order backward (grad mode off in it) runs the backend's norm_act_bwd, never
    the differentiable recompute; create_graph=True runs the recompute."""
    norm_act_module = importlib.import_module("fastp2p.ops.norm_act")  # not the function
    calls = []
    real = norm_act_module.norm_act_backward_with_graph
    monkeypatch.setattr(norm_act_module, "norm_act_backward_with_graph",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    leaves, stats = _inputs(CASES[0], torch.float32)
    _ours(CASES[0], leaves, stats).sum().backward()
    assert calls == []
    torch.autograd.grad(_ours(CASES[0], leaves, stats).sum(), leaves["x"], create_graph=True)
    assert calls == [1]
