"""Gaps found by mutation testing of the op layer (fastp2p/ops/norm_act.py, conv_norm_act.py,
losses.py, backends/cpp.py; fastp2p/nn/fused.py, fused_conv.py): argument checks, the path a
call takes, and what the backward reads, each on the smallest case that tells them apart."""
import re

import pytest
import torch

import fastp2p
from fastp2p.ops import norm_act, norm_act_concat, norm_act_into
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import CPU_BACKEND_PARAMS, KERNELS, REGISTRY_DEFAULT

interpreted = pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")


def _randn(*shape, seed=0, dtype=torch.float64):
    """Random values away from zero (no exact zeros for a ReLU or a dropout to hide)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    return x + torch.where(x >= 0, 0.1, -0.1).to(dtype)


def _refused(message, call):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# ---------------------------------------------------------------- norm_act's argument checks

def test_a_three_dimensional_x_is_refused_as_not_nchw():
    """A (C, H, W) image must be named as the wrong rank, not fail deeper in a backend."""
    _refused("expects x of shape (N, C, H, W), got (3, 4, 4)", lambda: norm_act(_randn(3, 4, 4)))


def test_an_integer_weight_is_refused_as_not_floating_point():
    """Integer affine parameters would be truncated or refused by a kernel without a name."""
    x = _randn(2, 3, 4, 4)
    weight = torch.ones(3, dtype=torch.int64)
    _refused("weight must be floating point, got torch.int64",
             lambda: norm_act(x, weight, torch.zeros(3, dtype=torch.int64)))


def test_an_empty_x_is_refused_by_name():
    """An empty batch gives no statistics: the op names it instead of failing in a kernel."""
    _refused("x must not be empty, got shape (0, 3, 4, 4)",
             lambda: norm_act(torch.empty(0, 3, 4, 4, dtype=torch.float64)))


def test_running_mean_without_running_var_is_refused():
    """Half a pair of running statistics cannot be updated like nn.BatchNorm2d's."""
    x = _randn(2, 3, 4, 4)
    _refused("give both running_mean and running_var",
             lambda: norm_act(x, None, None, torch.zeros(3, dtype=torch.float64), None,
                              norm="batch"))


def test_running_statistics_with_instance_norm_are_refused():
    """Instance norm would silently ignore running buffers a caller expects to be updated."""
    x = _randn(2, 3, 4, 4)
    running = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    _refused("running statistics are only used by norm='batch'",
             lambda: norm_act(x, None, None, *running, norm="instance"))


def test_eval_batch_norm_without_running_statistics_needs_two_values_per_channel():
    """Without running buffers an eval batch norm uses the batch's statistics, as training does."""
    x = _randn(1, 3, 1, 1)
    _refused("norm_act: Expected more than 1 value per channel",
             lambda: norm_act(x, norm="batch", training=False))


def test_a_counter_on_another_device_is_refused():
    """The batch counter must live with x; a meta one would count nothing."""
    x = _randn(2, 3, 4, 4)
    running = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    counter = torch.zeros(1, dtype=torch.int64, device="meta")
    _refused("num_batches_tracked must be one int64 element on x's device",
             lambda: norm_act(x, None, None, *running, norm="batch",
                              num_batches_tracked=counter))


def test_norm_act_into_refuses_a_negative_channel_offset():
    """A negative offset would write channels before the destination's slice."""
    x = _randn(1, 3, 3, 3)
    out = torch.zeros(1, 4, 3, 3, dtype=torch.float64)
    _refused("norm_act: channels [-1, 2) do not fit a destination with 4 channels",
             lambda: norm_act_into(x, None, None, None, None, out, -1))


def test_a_bool_seed_is_refused():
    """True is an int to Python, but a seed given as a bool is a caller's mistake."""
    x = _randn(2, 3, 4, 4)
    _refused("seed must be a Python int or an int64 tensor, got bool",
             lambda: norm_act(x, dropout_p=0.5, seed=True))


def test_an_int_seed_with_a_tensor_offset_is_refused():
    """Seed and offset are read together: both ints or both device scalars."""
    x = _randn(2, 3, 4, 4)
    _refused("seed and offset must both be ints or both be int64 tensors",
             lambda: norm_act(x, dropout_p=0.5, seed=3, offset=torch.tensor(5)))


def test_norm_act_into_refuses_a_bool_seed():
    """The launcher entry point checks the dropout stream's arguments as norm_act does."""
    x = _randn(1, 3, 3, 3)
    out = torch.zeros(1, 3, 3, 3, dtype=torch.float64)
    _refused("seed must be a Python int or an int64 tensor, got bool",
             lambda: norm_act_into(x, None, None, None, None, out, 0, dropout_p=0.5, seed=True))


def test_norm_act_into_refuses_a_float_counter():
    """The launcher entry point checks num_batches_tracked as norm_act does."""
    x = _randn(2, 3, 3, 3)
    out = torch.zeros(2, 3, 3, 3, dtype=torch.float64)
    running = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    _refused("num_batches_tracked must be one int64 element",
             lambda: norm_act_into(x, None, None, *running, out, 0, norm="batch",
                                   num_batches_tracked=torch.tensor([0.0])))


# ---------------------------------------------------------------- norm_act's paths and backward

@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS + [REGISTRY_DEFAULT], indirect=True)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
def test_device_scalar_seed_and_offset_draw_the_same_mask_as_ints(backend, grad):
    """A CUDA-graph caller's tensor (seed, offset) must mean what the ints mean, on every path."""
    x = _randn(2, 3, 4, 4, dtype=torch.float32).requires_grad_(grad)
    settings = dict(norm="instance", activation="relu", dropout_p=0.5)
    expected = norm_act(x, seed=5, offset=9, **settings)
    got = norm_act(x, seed=torch.tensor(5), offset=torch.tensor(9), **settings)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS + [REGISTRY_DEFAULT], indirect=True)
def test_a_skip_alone_requiring_grad_gets_its_relu_gradient(backend):
    """Only the skip may require grad (a frozen decoder input): it must still get a gradient,
    also from a backend whose kernel writes the skip's half outside autograd."""
    skip = _randn(2, 2, 3, 3, dtype=torch.float32).requires_grad_()
    x = _randn(2, 3, 3, 3, seed=1, dtype=torch.float32)
    out = norm_act_concat(skip, x)
    grad = _randn(*out.shape, seed=2, dtype=torch.float32)
    (got,) = torch.autograd.grad(out, skip, grad)
    assert torch.equal(got, grad[:, :2] * (skip > 0))


def test_an_eval_batch_norm_leaves_the_running_statistics_version_alone():
    """Eval reads the running buffers only: bumping their version breaks autograd elsewhere."""
    x = _randn(2, 3, 4, 4).requires_grad_()
    running = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    versions = [t._version for t in running]
    norm_act(x, None, None, *running, norm="batch", training=False)
    assert [t._version for t in running] == versions


@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS, indirect=True)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
def test_an_eval_batch_norm_without_running_statistics_normalizes_by_the_batch(backend, grad):
    """BatchNorm2d(track_running_stats=False) in eval uses the batch's statistics."""
    x = _randn(2, 3, 4, 4, dtype=torch.float32).requires_grad_(grad)
    settings = dict(norm="batch", training=False, momentum=0.1, eps=1e-5, activation="none",
                    slope=0.2, dropout_p=0.0, seed=0, offset=0)
    expected = norm_act_math(x.detach().double(), None, None, None, None, **settings)
    assert_close(norm_act(x, **settings), expected, FP32_SINGLE_OP, "output")


@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS, indirect=True)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
def test_strided_running_statistics_are_updated_in_place(backend, grad):
    """Running buffers the kernels cannot update as they are (a strided view) still get the
    update, through whatever copy the backend makes."""
    x = _randn(2, 3, 4, 4, dtype=torch.float32).requires_grad_(grad)
    storage = _randn(2, 6, seed=1, dtype=torch.float32).abs() + 0.5
    running = storage[0, ::2], storage[1, ::2]
    expected = [t.double() for t in running]
    norm_act_math(x.detach().double(), None, None, *expected, norm="batch", training=True,
                  momentum=0.1, eps=1e-5, activation="none", slope=0.2, dropout_p=0.0, seed=0,
                  offset=0)
    norm_act(x, None, None, *running, norm="batch")
    for name, got, want in zip(("running_mean", "running_var"), running, expected):
        assert_close(got, want, FP32_SINGLE_OP, name)


@pytest.mark.parametrize("backend", CPU_BACKEND_PARAMS + [REGISTRY_DEFAULT], indirect=True)
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
def test_a_training_batch_norm_counts_its_batch_once_on_every_path(backend, grad):
    """num_batches_tracked must advance by exactly one per training call, as nn.BatchNorm2d."""
    x = _randn(2, 3, 4, 4, dtype=torch.float32).requires_grad_(grad)
    running = torch.zeros(3), torch.ones(3)
    counter = torch.tensor(4)
    norm_act(x, None, None, *running, norm="batch", num_batches_tracked=counter)
    assert counter.item() == 5

# ---------------------------------------------------------------- conv_norm_act

@pytest.mark.parametrize("norm", ["instance", "none"])
@pytest.mark.interpreter
@interpreted
def test_conv_norm_act_hands_running_buffers_to_batch_norm_only(norm):
    """Running buffers given with another norm must stay as they are, as nn.InstanceNorm2d's."""
    from fastp2p.kernels.conv_fused_types import InputTransform
    from fastp2p.ops.conv_norm_act import conv_norm_act
    x = _randn(2, 3, 6, 6, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    weight, bias = _randn(4, 3, 3, 3, seed=1, dtype=torch.float32), _randn(4, seed=2)
    running = _randn(4, seed=3, dtype=torch.float32), _randn(4, seed=4, dtype=torch.float32)
    before = [t.clone() for t in running]
    conv_norm_act([x], [InputTransform()], weight, bias.float(), stride=1, padding=1,
                  norm=norm, running_mean=running[0], running_var=running[1])
    assert all(torch.equal(t, b) for t, b in zip(running, before))


# ---------------------------------------------------------------- the networks' fused forward

def test_dropout_layers_of_one_forward_draw_consecutive_offsets():
    """Each dropout layer of a forward must draw its own stretch of the stream, not reuse one."""
    from fastp2p.nn.fused import DropoutRNG
    state = torch.tensor([7, 100], dtype=torch.int64)
    rng = DropoutRNG(state)
    draws = [rng.take(10), rng.take(5)]
    assert [(int(s), int(o)) for s, o in draws] == [(7, 100), (7, 110)]
    assert state.tolist() == [7, 115]   # each take advanced the stream past its draw


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad"])
def test_an_eval_unet_draws_no_dropout_masks(grad):
    """Dropout in eval is the identity, as the reference's nn.Dropout in eval: it must neither
    drop nor consume the dropout stream (a later training forward would draw other masks)."""
    torch.manual_seed(0)
    unet = fastp2p.UNet(3, 3, 6, 4, norm="batch", use_dropout=True).eval()  # 6: has a Dropout
    assert any(isinstance(m, torch.nn.Dropout) for m in unet.modules())
    before = unet.dropout_rng.clone()
    with torch.set_grad_enabled(grad):
        unet(_randn(1, 3, 64, 64, dtype=torch.float32))
    assert torch.equal(unet.dropout_rng, before)
