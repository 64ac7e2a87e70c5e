"""The C++ l1_loss on 1-channel images in different memory formats: a size-1 dimension's stride
is arbitrary, so a channels-last 1-channel tensor and a contiguous one are both dense but their
strides differ; the extension compares strides raw and refused the pair ("y must have the
strides of the first input"). Value and gradient against float64 torch."""
import pytest
import torch
import torch.nn.functional as F

from fastp2p.ops.losses import l1_loss
from helpers.cpp_backend_helpers import requires_extension
from helpers.forced_backend import force_backend
from helpers.tolerances import FP32_SINGLE_OP, assert_close

pytestmark = requires_extension

LAYOUTS = ("nchw", "nhwc")


def in_layout(t, layout):
    """t with the strides of a freshly allocated tensor of that layout (``.contiguous(memory_
    format=...)`` returns a 1-channel tensor unchanged: it is contiguous in both)."""
    if layout == "nchw":
        return t.contiguous()
    n, c, h, w = t.shape
    return torch.empty(n, h, w, c, dtype=t.dtype).permute(0, 3, 1, 2).copy_(t)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (1, 1, 5, 1), (3, 2, 1, 4)], ids=str)
@pytest.mark.parametrize("fake_layout", LAYOUTS)
@pytest.mark.parametrize("real_layout", [*LAYOUTS, "strided"])
def test_l1_loss_across_layouts_with_size_one_dims(monkeypatch, shape, fake_layout, real_layout):
    force_backend(monkeypatch, "cpp")
    gen = torch.Generator().manual_seed(0)
    fake = in_layout(torch.randn(shape, generator=gen), fake_layout)
    real = torch.randn(shape, generator=gen)
    if real_layout == "strided":
        real = torch.randn(*shape[:3], shape[3] * 2, generator=gen)[..., ::2]
    else:
        real = in_layout(real, real_layout)
    leaf = fake.detach().requires_grad_(True)
    assert fake_layout == "nchw" or leaf.stride(1) == 1
    loss = l1_loss(leaf, real)
    loss.backward()
    fake64 = fake.double().requires_grad_(True)
    expected = F.l1_loss(fake64, real.double())
    expected.backward()
    assert_close(loss, expected, FP32_SINGLE_OP, "loss")
    assert_close(leaf.grad, fake64.grad, FP32_SINGLE_OP, "grad")
