"""fastp2p.train.finite.first_nonfinite, the check before every save, on tensors at the edges:
large finite values are not NaN or Inf (a 2-norm overflows where the max-abs does not; a
float64 value past float32's range was taken for Inf when the maxima were compared in float32),
and NaN or Inf is found in a one-element tensor and in any floating dtype."""
import pytest
import torch

from fastp2p.train.finite import first_nonfinite

LARGE_BUT_FINITE = {
    "2-norm past float32": torch.full((4,), 2e19),
    "2-norm past float16": torch.full((10_000,), 1000.0, dtype=torch.float16),
    "past float32's range": torch.tensor([1e300], dtype=torch.float64),
    "bfloat16 near its max": torch.full((64,), 3e38, dtype=torch.bfloat16),
}


def test_large_finite_values_are_not_reported():
    assert first_nonfinite(LARGE_BUT_FINITE.items()) is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("size", [1, 257])
def test_nan_or_inf_anywhere_is_found_by_name(dtype, value, size):
    bad = torch.randn(size).to(dtype)
    bad[size // 2] = value
    tensors = [*LARGE_BUT_FINITE.items(), ("steps", torch.arange(3)), ("bad", bad),
               ("later", torch.tensor([float("nan")]))]
    assert first_nonfinite(tensors) == "bad"
