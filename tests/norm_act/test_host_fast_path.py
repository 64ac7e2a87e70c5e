"""The op's cheap paths (issue 15 item 1) keep its behaviour: inference calls launch without the
autograd Function, the backend choice is cached but follows FASTP2P_BACKEND between calls, and
the C++ launcher addresses its destination slice without a view (staging it where it must)."""
import importlib

import pytest
import torch

from fastp2p.ops import backend_name_for, norm_act, norm_act_concat, norm_act_into
from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.forced_backend import force_backend
from helpers.tolerances import FP32_SINGLE_OP, assert_close

norm_act_module = importlib.import_module("fastp2p.ops.norm_act")  # the package exports a function
needs_cpp = pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C was not built")

# (norm, training, activation, affine, running statistics)
INFERENCE_CASES = [
    ("batch", False, "leaky_relu", True, True),   # eval BatchNorm
    ("none", True, "leaky_relu", False, False),   # the folded layer
    ("batch", True, "relu", True, True),          # train-mode BatchNorm under no_grad
    ("instance", True, "none", True, False),
]


def _inputs(norm, affine, running, channels=6):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, channels, 3, 4, generator=gen, dtype=torch.float64)
    weight = torch.rand(channels, generator=gen, dtype=torch.float64) + 0.5 if affine else None
    bias = torch.randn(channels, generator=gen, dtype=torch.float64) if affine else None
    mean = torch.randn(channels, generator=gen, dtype=torch.float64) if running else None
    var = torch.rand(channels, generator=gen, dtype=torch.float64) + 0.5 if running else None
    return x, weight, bias, mean, var


def _forbid_the_autograd_function(monkeypatch):
    def no_function(*args):
        raise AssertionError("an inference call went through the autograd Function")
    monkeypatch.setattr(norm_act_module._NormActFunction, "apply", no_function)


def _float(t):
    return None if t is None else t.float()


@pytest.mark.parametrize("case", INFERENCE_CASES, ids=lambda c: f"{c[0]}-train{c[1]}-{c[2]}")
def test_inference_skips_the_autograd_function_and_matches_it(case, backend, monkeypatch):
    norm, training, activation, affine, running = case
    x64, w64, b64, mean64, var64 = _inputs(norm, affine, running)
    kwargs = dict(norm=norm, training=training, activation=activation, slope=0.2,
                  dropout_p=0.3, seed=11, offset=4)
    x = x64.float().contiguous(memory_format=torch.channels_last)
    weight, bias = _float(w64), _float(b64)
    stats_fast = (_float(mean64), _float(var64))
    stats_function = (_float(mean64), _float(var64))

    # Through the autograd Function (a gradient is wanted): the behaviour to keep.
    expected = norm_act(x.clone().requires_grad_(), weight, bias, *stats_function, **kwargs)

    _forbid_the_autograd_function(monkeypatch)
    versions = [t._version for t in stats_fast if t is not None]
    with torch.no_grad():
        got = norm_act(x, weight, bias, *stats_fast, **kwargs)

    assert not got.requires_grad
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected.detach())  # same launcher, same inputs: the same bits
    reference = norm_act_math(x64, w64, b64, _clone(mean64), _clone(var64), momentum=0.1,
                              eps=1e-5, **kwargs)
    assert_close(got, reference, FP32_SINGLE_OP, "inference output")
    for fast, through_function in zip(stats_fast, stats_function):
        if fast is not None:
            assert torch.equal(fast, through_function)
    if running and training:  # updated in place: autograd must see the change
        assert all(t._version > v for t, v in zip(stats_fast, versions))


def _clone(t):
    return None if t is None else t.clone()


def test_inference_concat_with_device_scalar_seeds_matches_the_function(backend, monkeypatch):
    """norm_act_concat with the U-Net's [seed, offset] buffer scalars, no gradient wanted."""
    gen = torch.Generator().manual_seed(2)
    skip, x = torch.randn(1, 4, 4, 4, generator=gen), torch.randn(1, 5, 4, 4, generator=gen)
    state = torch.tensor([99, 7], dtype=torch.int64)
    kwargs = dict(norm="none", activation="relu", dropout_p=0.5, seed=state[0], offset=state[1])
    expected = norm_act_concat(skip, x.clone().requires_grad_(), **kwargs)
    _forbid_the_autograd_function(monkeypatch)
    with torch.inference_mode():
        got = norm_act_concat(skip, x, **kwargs)
    assert torch.equal(got, expected.detach())
    assert torch.equal(got[:, :4], torch.relu(skip))


def test_a_gradient_to_the_weight_alone_still_records_autograd(backend):
    x64, w64, b64, _, _ = _inputs("instance", True, False)
    x, weight = x64.float(), w64.float().requires_grad_()
    bias = b64.float().requires_grad_()
    y = norm_act(x, weight, bias, norm="instance", activation="leaky_relu")
    assert y.requires_grad
    y.sum().backward()
    ref_w, ref_b = w64.clone().requires_grad_(), b64.clone().requires_grad_()
    norm_act_math(x64, ref_w, ref_b, None, None, norm="instance", training=True, momentum=0.1,
                  eps=1e-5, activation="leaky_relu", slope=0.2, dropout_p=0.0, seed=0,
                  offset=0).sum().backward()
    assert_close(weight.grad, ref_w.grad, FP32_SINGLE_OP, "grad weight")
    assert_close(bias.grad, ref_b.grad, FP32_SINGLE_OP, "grad bias")


def test_the_backend_choice_follows_the_environment_between_calls(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    assert backend_name_for(cpu) == "reference"
    if cpp_backend.available():
        monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
        assert backend_name_for(cpu) == "cpp"
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    assert backend_name_for(cpu) == "reference"
    for _ in range(2):  # an invalid name is refused on every call, not remembered
        monkeypatch.setenv("FASTP2P_BACKEND", "nonsense")
        with pytest.raises(ValueError, match="FASTP2P_BACKEND must be one of"):
            backend_name_for(cpu)


@needs_cpp
@pytest.mark.parametrize("x_format,out_format", [
    (torch.channels_last, torch.channels_last),         # written in place, by address
    (torch.contiguous_format, torch.contiguous_format),  # written in place, by address
    (torch.contiguous_format, torch.channels_last),      # staged, then copied into the slice
    (torch.channels_last, torch.contiguous_format)])     # staged (x's C > W here)
def test_cpp_launcher_writes_exactly_its_slice(x_format, out_format, monkeypatch):
    force_backend(monkeypatch, "cpp")
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 5, 3, 4, generator=gen).contiguous(memory_format=x_format)
    out = torch.full((2, 13, 3, 4), float("nan")).contiguous(memory_format=out_format)
    norm_act_into(x, None, None, None, None, out, 6, norm="instance", activation="relu")
    expected = torch.relu(torch.nn.functional.instance_norm(x.double()))
    assert_close(out[:, 6:11], expected, FP32_SINGLE_OP, "slice")
    assert out[:, :6].isnan().all() and out[:, 11:].isnan().all()


@needs_cpp
def test_cpp_launcher_refuses_a_slice_outside_the_destination():
    x, out = torch.randn(1, 4, 2, 2), torch.empty(1, 6, 2, 2)
    with pytest.raises(ValueError, match=r"channels \[3, 7\) do not fit"):
        cpp_backend.norm_act_fwd(x, None, None, None, None, out, 3, norm="none", training=True,
                                 momentum=0.1, eps=1e-5, activation="relu", slope=0.0,
                                 dropout_p=0.0, seed=0, offset=0)
