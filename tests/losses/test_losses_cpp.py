"""fastp2p._C's fused loss launchers against the golden GANLoss values and the reference."""
import pytest
import torch
import torch.nn.functional as F

from helpers.cpp_backend_helpers import cpp_backend, requires_extension
from fastp2p.reference import GANLoss
from helpers.tolerances import FP32_SINGLE_OP, GOLDEN_OUTPUT, assert_close, assert_storage_close

pytestmark = requires_extension

MODES = ["vanilla", "lsgan", "wgangp"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["real", "fake"])
def test_gan_loss_matches_golden(golden, mode, target):
    data = golden("golden_ganloss.pt")
    loss, grad = cpp_backend.gan_loss_fwd(data["pred"], mode=mode, target_is_real=target == "real")
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert_close(loss, data[f"{mode}_{target}"], GOLDEN_OUTPUT, "loss")
    assert_close(grad, data[f"{mode}_{target}_grad_pred"], GOLDEN_OUTPUT, "grad")


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("real", [True, False], ids=["real", "fake"])
def test_gan_loss_matches_float64_reference(layout, mode, real):
    logits = torch.randn(3, 1, 30, 30, generator=torch.Generator().manual_seed(5)) * 3
    if layout == "nhwc":
        logits = torch.randn(2, 4, 5, 6).to(memory_format=torch.channels_last)
    elif layout == "strided":
        logits = torch.randn(2, 3, 10, 12)[:, :, ::2, 1::3]
    loss, grad = cpp_backend.gan_loss_fwd(logits, mode=mode, target_is_real=real)
    x64 = logits.double().requires_grad_()
    expected = GANLoss(mode).double()(x64, real)
    (expected_grad,) = torch.autograd.grad(expected, x64)
    assert_close(loss, expected, FP32_SINGLE_OP, "loss")
    assert grad.shape == logits.shape and grad.dtype == logits.dtype
    assert_close(grad, expected_grad, FP32_SINGLE_OP, "grad")


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "mixed"])
def test_l1_loss_matches_float64_reference(layout):
    gen = torch.Generator().manual_seed(6)
    x, y = torch.randn(2, 3, 16, 16, generator=gen), torch.randn(2, 3, 16, 16, generator=gen)
    y[0, 0, 0, :4] = x[0, 0, 0, :4]  # equal elements: gradient 0, as torch's L1Loss
    if layout != "nchw":
        x = x.to(memory_format=torch.channels_last)
    if layout == "nhwc":
        y = y.to(memory_format=torch.channels_last)
    loss, grad = cpp_backend.l1_loss_fwd(x, y)
    x64 = x.double().requires_grad_()
    expected = F.l1_loss(x64, y.double())
    (expected_grad,) = torch.autograd.grad(expected, x64)
    assert_close(loss, expected, FP32_SINGLE_OP, "loss")
    assert_close(grad, expected_grad, FP32_SINGLE_OP, "grad")
    assert (grad[0, 0, 0, :4] == 0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("mode", MODES)
def test_gan_loss_in_low_precision_storage(dtype, mode):
    """Against float64 on the stored inputs: the float32 loss to the single-op bound, the
    gradient (stored in the dtype) within DESIGN §5's 16-bit rule."""
    logits = torch.randn(2, 1, 30, 30, generator=torch.Generator().manual_seed(7)).to(dtype)
    loss, grad = cpp_backend.gan_loss_fwd(logits, mode=mode, target_is_real=True)
    x64 = logits.double().requires_grad_()
    expected = GANLoss(mode).double()(x64, True)
    (expected_grad,) = torch.autograd.grad(expected, x64)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_storage_close(loss, expected, "loss (float32 sums of the stored inputs)")
    assert_storage_close(grad, expected_grad, "grad")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_l1_loss_in_low_precision_storage(dtype):
    gen = torch.Generator().manual_seed(8)
    x, y = (torch.randn(2, 3, 8, 8, generator=gen).to(dtype) for _ in range(2))
    y[0, 0, 0, :4] = x[0, 0, 0, :4]  # equal elements: gradient 0
    loss, grad = cpp_backend.l1_loss_fwd(x, y)
    x64 = x.double().requires_grad_()
    expected = F.l1_loss(x64, y.double())
    (expected_grad,) = torch.autograd.grad(expected, x64)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_storage_close(loss, expected, "l1 loss")
    assert_storage_close(grad, expected_grad, "l1 grad")
