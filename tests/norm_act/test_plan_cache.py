"""Inference calls run from a plan cached per (shapes, strides, dtypes, devices, settings,
backend) (issue 15 item 1): built with the full checks on its key's first call and reused after;
a new shape, dtype, stride or setting builds another. Outputs are poisoned before the launch and
must equal the autograd Function's (the path tested against the float64 reference) bit for bit.
The C++ plan skips the statistics an inference call discards (``statistics=False``)."""
import importlib

import pytest
import torch

from fastp2p.ops import norm_act, norm_act_concat
from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.forced_backend import force_backend
from helpers.tolerances import FP32_SINGLE_OP, assert_close

norm_act_module = importlib.import_module("fastp2p.ops.norm_act")
needs_cpp = pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C was not built")
KWARGS = dict(norm="batch", training=False, activation="leaky_relu", slope=0.2)


@pytest.fixture
def plan_builds(monkeypatch):
    """An empty plan cache, poisoned output allocations, and the list of plans built."""
    monkeypatch.setattr(norm_act_module, "_plans", {})
    built = []

    class CountedPlan(norm_act_module._Plan):
        __slots__ = ()

        def __init__(self, *args):
            built.append(args[1].shape)
            super().__init__(*args)

    monkeypatch.setattr(norm_act_module, "_Plan", CountedPlan)
    empty_strided = torch.empty_strided
    monkeypatch.setattr(torch, "empty_strided",
                        lambda *a, **k: empty_strided(*a, **k).fill_(float("nan")))
    return built


def _vectors(channels, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(channels, generator=gen) + 0.5, torch.randn(channels, generator=gen),
            torch.randn(channels, generator=gen), torch.rand(channels, generator=gen) + 0.5)


def _x(shape, seed, dtype=torch.float32, memory_format=torch.contiguous_format):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=memory_format)


def _check(x, vectors, **kwargs):
    """The inference call, against the autograd Function's output on the same inputs."""
    with torch.no_grad():
        got = norm_act(x, *vectors, **kwargs)
    expected = norm_act(x.detach().requires_grad_(), *vectors, **kwargs).detach()
    assert torch.equal(got, expected)
    assert got.stride() == expected.stride()
    return got


def test_a_plan_is_built_once_per_kind_of_call(backend, plan_builds):
    vectors = _vectors(6, 1)
    x = _x((2, 6, 3, 4), 2)
    got = _check(x, vectors, **KWARGS)
    reference = norm_act_math(x.double(), *(v.double() for v in vectors), momentum=0.1,
                              eps=1e-5, dropout_p=0.0, seed=0, offset=0, **KWARGS)
    assert_close(got, reference, FP32_SINGLE_OP, "first call")
    assert len(plan_builds) == 1

    # Same kind, new data: the cached plan, reading this call's tensors.
    _check(_x((2, 6, 3, 4), 3), _vectors(6, 4), **KWARGS)
    assert len(plan_builds) == 1

    # A new shape, dtype, memory format, stride or setting: a plan of its own each.
    _check(_x((2, 6, 5, 4), 5), vectors, **KWARGS)
    _check(_x((2, 6, 3, 4), 6, torch.bfloat16), vectors, **KWARGS)
    _check(_x((2, 6, 3, 4), 7, memory_format=torch.channels_last), vectors, **KWARGS)
    _check(_x((2, 6, 3, 8), 8)[..., ::2], vectors, **KWARGS)
    _check(x, vectors, **dict(KWARGS, activation="relu"))
    _check(x, vectors[:2], norm="instance", activation="none")
    assert len(plan_builds) == 7
    _check(_x((2, 6, 5, 4), 9), vectors, **KWARGS)  # each one is kept
    assert len(plan_builds) == 7


def test_a_bad_argument_after_a_cached_call_is_still_refused(backend, plan_builds):
    x = _x((1, 4, 3, 3), 1)
    vectors = _vectors(4, 2)
    _check(x, vectors, **KWARGS)
    with torch.no_grad(), pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        norm_act(x, torch.ones(5), *vectors[1:], **KWARGS)
    with torch.no_grad(), pytest.raises(ValueError, match="activation must be one of"):
        norm_act(x, *vectors, **dict(KWARGS, activation="gelu"))
    with torch.no_grad(), pytest.raises(ValueError, match="seed must be a Python int"):
        norm_act(x, *vectors, **KWARGS, seed=1.5)


def test_concat_and_train_mode_statistics_through_the_plan(backend, plan_builds):
    """The skip half and the running statistics' in-place update, on a cached plan's call."""
    skip, x = _x((2, 3, 4, 4), 1), _x((2, 5, 4, 4), 2)
    weight, bias, mean, var = _vectors(5, 3)
    mean_function, var_function = mean.clone(), var.clone()
    for _ in range(2):
        with torch.no_grad():
            got = norm_act_concat(skip, x, weight, bias, mean, var, norm="batch", training=True)
        expected = norm_act_concat(skip, x.clone().requires_grad_(), weight, bias,
                                   mean_function, var_function, norm="batch", training=True)
        assert torch.equal(got, expected.detach())
        assert torch.equal(mean, mean_function) and torch.equal(var, var_function)
    assert len(plan_builds) == 1


def test_the_cache_is_bounded(backend, plan_builds, monkeypatch):
    monkeypatch.setattr(norm_act_module, "_MAX_PLANS", 2)
    for height in (2, 3, 4, 5):
        _check(_x((1, 3, height, 2), height), (), norm="none", activation="relu")
    assert len(norm_act_module._plans) <= 2


@needs_cpp
def test_inference_calls_ask_the_cpp_plan_for_no_statistics(monkeypatch, plan_builds):
    force_backend(monkeypatch, "cpp")
    asked = []
    original = cpp_backend.norm_act_fwd_plan

    def recording(*args, statistics, **kwargs):
        asked.append(statistics)
        return original(*args, statistics=statistics, **kwargs)

    monkeypatch.setattr(cpp_backend, "norm_act_fwd_plan", recording)
    _check(_x((2, 4, 3, 3), 1), _vectors(4, 2)[:2], norm="instance", activation="relu")
    assert asked == [False]


def _launch_both_ways(norm, training, running, statistics, memory_format):
    """(out, statistics) of cpp's norm_act_fwd and of its plan on the same inputs."""
    x = _x((2, 5, 3, 4), 1, memory_format=memory_format)
    weight, bias, mean, var = _vectors(5, 2)
    stats = (mean, var) if running else (None, None)
    kwargs = dict(norm=norm, training=training, momentum=0.1, eps=1e-5, activation="leaky_relu",
                  slope=0.2, dropout_p=0.25)
    results = []
    for planned in (False, True):
        out = torch.full((2, 9, 3, 4), float("nan")).contiguous(memory_format=memory_format)
        running_stats = tuple(None if t is None else t.clone() for t in stats)
        if planned:
            plan = cpp_backend.norm_act_fwd_plan(x, weight, bias, *running_stats, out, 3,
                                                 statistics=statistics, **kwargs)
            returned = plan(x, weight, bias, *running_stats, out, 7, 2)
        else:
            returned = cpp_backend.norm_act_fwd(x, weight, bias, *running_stats, out, 3,
                                                seed=7, offset=2, **kwargs)
        results.append((out, returned, running_stats))
    return results


@needs_cpp
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("norm,training,running", [
    ("instance", True, False), ("batch", True, True), ("batch", False, True),
    ("none", True, False)])
@pytest.mark.parametrize("statistics", [True, False])
def test_the_cpp_plan_does_what_the_launcher_does(norm, training, running, statistics,
                                                  memory_format):
    (out, returned, running_stats), (plan_out, plan_returned, plan_running) = _launch_both_ways(
        norm, training, running, statistics, memory_format)
    assert torch.equal(plan_out[:, 3:8], out[:, 3:8]) and not out[:, 3:8].isnan().any()
    for written in (out, plan_out):  # and nothing outside channels [3, 8)
        assert written[:, :3].isnan().all() and written[:, 8:].isnan().all()
    for mine, theirs in zip(plan_running, running_stats):
        assert mine is None or torch.equal(mine, theirs)
    if statistics:
        assert all(torch.equal(a, b) for a, b in zip(plan_returned, returned))
    else:
        assert plan_returned is None


@needs_cpp
def test_the_extension_plan_refuses_addresses_it_was_not_built_for():
    from fastp2p import _C
    x = torch.randn(1, 2, 3, 3)
    arg = cpp_backend._arg(x)
    plan = _C.NormActFwdPlan(arg, None, None, None, None, arg, None, None, 3, 0.1, 1e-5, 0, 0.0,
                             0.0)
    weight = torch.ones(2)
    with pytest.raises(ValueError, match="weight and bias must be given exactly when"):
        plan(x.data_ptr(), weight.data_ptr(), weight.data_ptr(), 0, 0, x.data_ptr(), 0, 0, 0, 0,
             0, 0, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="x and out must be given"):
        plan(0, 0, 0, 0, 0, x.data_ptr(), 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="instance norm needs more than one spatial"):
        one_pixel = (x.data_ptr(), 0, (1, 2, 1, 1), (2, 1, 1, 1), -1)
        _C.NormActFwdPlan(one_pixel, None, None, None, None, one_pixel, None, None, 0, 0.1,
                          1e-5, 0, 0.0, 0.0)


@pytest.mark.parametrize("skip_format,x_format", [
    (torch.contiguous_format, torch.channels_last),  # the U-Net's NCHW inference
    (torch.channels_last, torch.contiguous_format)], ids=["nchw_skip", "channels_last_skip"])
def test_concat_with_a_skip_in_another_layout(backend, plan_builds, skip_format, x_format):
    skip = _x((2, 3, 4, 5), 1, memory_format=skip_format)
    x = _x((2, 5, 4, 5), 2, memory_format=x_format)
    kwargs = dict(norm="instance", activation="relu")
    for _ in range(2):
        with torch.no_grad():
            got = norm_act_concat(skip, x, **kwargs)
        expected = norm_act_concat(skip, x.detach().requires_grad_(), **kwargs).detach()
        assert torch.equal(got, expected) and got.stride() == expected.stride()
        assert torch.equal(got[:, :3], torch.relu(skip))
    assert len(plan_builds) == 1
