"""norm_act with per-channel vectors that are not float32 contiguous, on every CPU backend: a
bf16 / fp16 model's weight and bias, a user's strided view (``w[::2]``), strided running
statistics. The C++ backend reads such vectors through float32 copies, which must live until
its kernel has run (it once kept only their addresses: garbage outputs, NaN, inf); the Triton
kernels index the vectors densely, so strided ones go through contiguous copies (they once read
the wrong elements and updated memory outside the running statistics' view)."""
import pytest
import torch

from fastp2p.ops import norm_act
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.tolerances import FP32_SINGLE_OP, assert_close, assert_storage_close


def _strided(values):
    """``values`` as a view with stride 2 into a NaN-filled buffer twice its length."""
    base = torch.full((2 * values.numel(),), float("nan"), dtype=values.dtype)
    base[::2] = values
    return base[::2]


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weight_and_bias(backend, norm, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 5, 7, generator=generator).to(dtype).requires_grad_(True)
    weight = (torch.rand(8, generator=generator) + 0.5).to(dtype).requires_grad_(True)
    bias = torch.randn(8, generator=generator).to(dtype).requires_grad_(True)
    grad = torch.randn(2, 8, 5, 7, generator=generator).to(dtype)
    y = norm_act(x, weight, bias, norm=norm, training=True, activation="leaky_relu", slope=0.2)
    y.backward(grad)
    expected_inputs = [t.detach().double().requires_grad_(True) for t in (x, weight, bias)]
    expected = norm_act_math(*expected_inputs, None, None, norm=norm, training=True,
                             momentum=0.1, eps=1e-5, activation="leaky_relu", slope=0.2,
                             dropout_p=0.0, seed=0, offset=0)
    expected.backward(grad.double())
    interpreted = backend == "triton"
    assert_storage_close(y, expected, f"{backend} {dtype} output", interpreted)
    for name, got, want in zip(("x", "weight", "bias"), (x, weight, bias), expected_inputs):
        assert_storage_close(got.grad, want.grad, f"{backend} {dtype} {name} gradient",
                             interpreted)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_strided_float32_vectors(backend, norm):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 5, 7, generator=generator, dtype=torch.float64)
    values = [torch.rand(8, generator=generator, dtype=torch.float64) + 0.5,
              torch.randn(8, generator=generator, dtype=torch.float64)]
    weight, bias = (_strided(v.float()).requires_grad_(True) for v in values)
    running = [None, None]
    if norm == "batch":
        running = [_strided(torch.randn(8, generator=generator)),
                   _strided(torch.rand(8, generator=generator) + 0.5)]
    expected_running = [None if r is None else r.double().clone() for r in running]
    x32 = x.float().requires_grad_(True)
    grad = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    y = norm_act(x32, weight, bias, *running, norm=norm, training=True, activation="relu")
    y.backward(grad.float())
    expected_inputs = [x.clone().requires_grad_(True)] + [
        v.clone().requires_grad_(True) for v in values]
    expected = norm_act_math(*expected_inputs, *expected_running, norm=norm, training=True,
                             momentum=0.1, eps=1e-5, activation="relu", slope=0.0,
                             dropout_p=0.0, seed=0, offset=0)
    expected.backward(grad)
    assert_close(y, expected, FP32_SINGLE_OP, f"{backend} output")
    for name, got, want in zip(("x", "weight", "bias"), (x32, weight, bias), expected_inputs):
        assert_close(got.grad, want.grad, FP32_SINGLE_OP, f"{backend} {name} gradient")
    for name, got, want in zip(("running_mean", "running_var"), running, expected_running):
        if got is not None:
            assert_close(got, want, FP32_SINGLE_OP, f"{backend} {name}")
            assert torch.isnan(got._base[1::2]).all(), f"{backend} wrote outside {name}'s view"
