"""norm_act on W == 1 maps with tensors in mixed layouts (a channels-last x beside an NCHW skip
or destination). The C++ backend merged H and W of such maps into one row when each tensor's
h stride was W times its w stride, which a channels-last tensor with W == 1 passes with a
non-unit w stride: the merged rows were then refused as neither channels-last nor NCHW.
Forward and backward against float64 math; the oracle's float64 tensors are contiguous (PyTorch
2.13's float64 instance_norm backward is wrong for N == 1 when the gradient's layout differs
from x's)."""
import pytest
import torch

from fastp2p.ops import norm_act_concat, norm_act_into
from fastp2p.ops.norm_act_reference import norm_act_math
from helpers.tolerances import FP32_SINGLE_OP, assert_close

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
KWARGS = dict(training=True, momentum=0.1, eps=1e-5, activation="leaky_relu", slope=0.2,
              dropout_p=0.0, seed=0, offset=0)


def _inputs(shape, skip_channels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(shape, generator=gen) * 1.7 + 0.3
    skip = torch.randn(n, skip_channels, h, w, generator=gen)
    return x, skip, torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen)


def _expected(x, skip, weight, bias, norm):
    """cat([relu(skip), norm_act(x)]) in float64, from contiguous float64 leaves."""
    leaves = [t.detach().double().contiguous().requires_grad_(True)
              for t in (x, skip, weight, bias)]
    y = torch.cat([leaves[1].relu(), norm_act_math(leaves[0], leaves[2], leaves[3], None, None,
                                                   norm=norm, **KWARGS)], 1)
    return y, leaves


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("x_layout, skip_layout", [("nhwc", "nchw"), ("nchw", "nhwc")])
@pytest.mark.parametrize("shape", [(1, 7, 5, 1), (2, 3, 4, 1)], ids=str)
def test_concat_forward_and_backward(backend, shape, x_layout, skip_layout, norm):
    x, skip, weight, bias = _inputs(shape, 2)
    x = x.contiguous(memory_format=LAYOUTS[x_layout])
    skip = skip.contiguous(memory_format=LAYOUTS[skip_layout])
    leaves = [t.clone().requires_grad_(True) for t in (x, skip, weight, bias)]
    y = norm_act_concat(leaves[1], leaves[0], leaves[2], leaves[3], norm=norm, **KWARGS)
    expected, leaves64 = _expected(x, skip, weight, bias, norm)
    assert_close(y, expected, FP32_SINGLE_OP, "y")
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    y.backward(grad.contiguous(memory_format=LAYOUTS[x_layout]))
    expected.backward(grad.double())
    for name, leaf, leaf64 in zip(("x", "skip", "weight", "bias"), leaves, leaves64):
        assert_close(leaf.grad, leaf64.grad, FP32_SINGLE_OP, f"grad {name}")


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("x_layout, out_layout", [("nchw", "nhwc"), ("nhwc", "nchw")])
def test_into_a_slice_of_another_layout(backend, x_layout, out_layout, norm):
    x, _, weight, bias = _inputs((1, 7, 5, 1), 0)
    out = torch.full((1, 10, 5, 1), float("nan")).contiguous(memory_format=LAYOUTS[out_layout])
    with torch.no_grad():
        norm_act_into(x.contiguous(memory_format=LAYOUTS[x_layout]), weight, bias, None, None,
                      out, 2, norm=norm, **KWARGS)
    expected = norm_act_math(x.double(), weight.double(), bias.double(), None, None, norm=norm,
                             **KWARGS)
    assert_close(out[:, 2:9], expected, FP32_SINGLE_OP, "slice")
    assert out[:, :2].isnan().all() and out[:, 9:].isnan().all(), "wrote outside its slice"
