"""The fused conv's norm statistics at their edges, through the Triton interpreter:

- a large bias: tile moments of y itself lost a large mean's spread (a constant output channel
  at 1001.3 was normalized to +-0.04 instead of 0); they are now summed as y - pivot. The
  saved (mean, rstd) normalize the stored y as float64 statistics of it do;
- groups of one value (batch norm of a (1, C, 1, 1) output, instance norm of a 1x1 map) are
  refused as PyTorch's norms and fastp2p's norm_act refuse them, before any running statistic
  is touched (they were normalized to 0 silently).
"""
import pytest
import torch

from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]


def _conv_norm_act(*args, **kwargs):
    from fastp2p.kernels.conv_fused_types import InputTransform
    from fastp2p.ops.conv_norm_act import conv_norm_act
    sources = args[0]
    return conv_norm_act(sources, [InputTransform()] * len(sources), *args[1:], **kwargs)


def _normalized(y, mean, rstd, norm):
    shape = (*mean.shape, 1, 1) if norm == "instance" else (1, -1, 1, 1)
    return (y - mean.view(shape)) * rstd.view(shape)


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("level", [1001.3, 10000.7])
def test_large_bias_statistics(norm, level):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 3, 4, 4, generator=gen) * 0.3
    weight[0] = 0.0     # output channel 0 is exactly its bias
    weight[2] *= 1e-2   # channel 2 near-constant around its bias
    bias = torch.tensor([level, 0.5, level, -3.0])
    y, mean, rstd = _conv_norm_act([x], weight, bias, stride=2, padding=1, norm=norm)
    y64 = y.double()
    dims = (2, 3) if norm == "instance" else (0, 2, 3)
    var, mean64 = torch.var_mean(y64, dim=dims, unbiased=False)
    expected = _normalized(y64, mean64, torch.rsqrt(var + 1e-5), norm)
    got = _normalized(y64, mean.double(), rstd.double(), norm)
    assert torch.equal(got[:, 0], torch.zeros_like(got[:, 0])), "constant channel != 0"
    assert torch.equal(mean.view(-1, 4)[:, 0],
                       torch.full_like(mean.view(-1, 4)[:, 0], y[0, 0, 0, 0]))
    channels = [1, 3]  # a mean / spread reachable in float32 at DESIGN §5's bound
    assert_close(got[:, channels], expected[:, channels], FP32_SINGLE_OP, "normalized")
    # channel 2 (mean / spread ~1e3-1e4) within twice the cost of a float32 mean, half an ulp
    half_ulp = torch.finfo(torch.float32).eps * level / 2
    floor = (half_ulp * rstd.view(-1, 4)[:, 2].double().max()).item()
    error = (got[:, 2] - expected[:, 2]).abs().max().item()
    assert error <= 2 * floor + FP32_SINGLE_OP, (error, floor)


@pytest.mark.parametrize("norm, shape, message", [
    ("batch", (1, 3, 2, 2), "more than 1 value per channel"),
    ("instance", (2, 3, 2, 2), "more than 1 spatial element"),
])
def test_groups_of_one_value_are_refused(norm, shape, message):
    """A 4x4 stride-2 conv of a 2x2 map (padding 1) gives a 1x1 map."""
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(4, 3, 4, 4), torch.randn(4)
    running = (torch.zeros(4), torch.ones(4)) if norm == "batch" else (None, None)
    with pytest.raises(ValueError, match=message):
        _conv_norm_act([x], weight, bias, stride=2, padding=1, norm=norm,
                       running_mean=running[0], running_var=running[1])
    if norm == "batch":
        assert torch.equal(running[0], torch.zeros(4)) and torch.equal(running[1], torch.ones(4))


def test_batch_norm_of_two_images_of_one_value_each_is_accepted():
    x = torch.randn(2, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(4, 3, 4, 4), torch.randn(4)
    y, mean, rstd = _conv_norm_act([x], weight, bias, stride=2, padding=1, norm="batch")
    var, mean64 = torch.var_mean(y.double(), dim=(0, 2, 3), unbiased=False)
    assert_close(mean, mean64, FP32_SINGLE_OP, "mean")
    assert_close(rstd, torch.rsqrt(var + 1e-5), FP32_SINGLE_OP, "rstd")
