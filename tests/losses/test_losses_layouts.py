"""gan_loss / l1_loss on float32 inputs laid out as the kernels must not take as they are, vs
the float64 reference, through every CPU backend (Triton interpreted):

- a gapped view (every other row of a float32 tensor), which is not one dense storage range and
  must be copied before a kernel walks it flat (test_losses.py's "strided" case becomes dense
  when it is cast to float32, so it never reaches the kernels gapped);
- l1_loss with y in another dense layout than x (channels-last vs NCHW, either way round, or
  gapped): y must be read in x's element order.
"""
import pytest
import torch

from fastp2p.ops import gan_loss
from fastp2p.reference import GANLoss as ReferenceGANLoss
from helpers.loss_checks import assert_l1_loss_matches_float64
from helpers.tolerances import FP32_SINGLE_OP, assert_close

MODES = ["vanilla", "lsgan", "wgangp"]


def _random(seed, shape=(3, 2, 7, 5)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def _gapped(seed):
    """A float32 view of every other row (H stride twice its dense value)."""
    view = _random(seed)[:, :, ::2]
    assert not view.is_contiguous() and view.stride()[2] == 2 * view.shape[3]
    return view


def _layout(t, name):
    if name == "nchw":
        return t.contiguous()
    if name == "nhwc":
        return t.contiguous(memory_format=torch.channels_last)
    assert name == "gapped"
    doubled = torch.empty(*t.shape[:2], 2 * t.shape[2], t.shape[3], dtype=t.dtype)
    doubled[:, :, ::2] = t
    doubled[:, :, 1::2] = float("nan")   # read by mistake, they poison the loss
    return doubled[:, :, ::2]


@pytest.mark.parametrize("mode", MODES)
def test_gan_loss_of_a_gapped_float32_view(backend, mode):
    for target_is_real in (True, False):
        x = _gapped(5).requires_grad_()
        ref = x.detach().double().requires_grad_()
        expected = ReferenceGANLoss(mode).double()(ref, target_is_real)
        expected.backward(torch.tensor(0.7, dtype=torch.float64))
        loss = gan_loss(x, mode, target_is_real)
        (loss * 0.7).backward()
        assert_close(loss, expected, FP32_SINGLE_OP, f"{mode} loss")
        assert_close(x.grad, ref.grad, FP32_SINGLE_OP, f"{mode} grad")


@pytest.mark.parametrize("layouts", [("gapped", "gapped"), ("nhwc", "nchw"), ("nchw", "nhwc"),
                                     ("nhwc", "gapped"), ("gapped", "nchw")],
                         ids=lambda pair: "-".join(pair))
def test_l1_loss_of_inputs_in_other_layouts(backend, layouts):
    shape = (3, 2, 4, 5)
    a = _layout(_random(7, shape), layouts[0]).requires_grad_()
    b = _layout(_random(8, shape) * 0.5, layouts[1]).requires_grad_()
    ra, rb = (t.detach().double().requires_grad_() for t in (a, b))
    assert_l1_loss_matches_float64(a, b, ra, rb)
