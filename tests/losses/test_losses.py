"""gan_loss / l1_loss (loss and gradient in one pass) vs the golden GANLoss values and the
float64 reference, through the Triton kernels (interpreted on CPU) and the reference backend."""
import re

import pytest
import torch
import torch.nn.functional as F

import fastp2p
from fastp2p.ops import gan_loss, l1_loss
from fastp2p.reference import GANLoss as ReferenceGANLoss
from helpers.forced_backend import force_backend
from helpers.loss_checks import assert_l1_loss_matches_float64
from helpers.tolerances import FP32_SINGLE_OP, GOLDEN_OUTPUT, assert_close
MODES = ["vanilla", "lsgan", "wgangp"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["real", "fake"])
def test_gan_loss_matches_golden(golden, backend, mode, target):
    data = golden("golden_ganloss.pt")
    pred = data["pred"].clone().requires_grad_()
    loss = fastp2p.GANLoss(mode)(pred, target == "real")
    loss.backward()
    assert_close(loss, data[f"{mode}_{target}"], GOLDEN_OUTPUT, "loss")
    assert_close(pred.grad, data[f"{mode}_{target}_grad_pred"], GOLDEN_OUTPUT, "grad")


def _logits(layout):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, 7, 5, generator=gen, dtype=torch.float64) * 3
    if layout == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        return x[:, :, ::2]
    return x


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
@pytest.mark.parametrize("mode", MODES)
def test_gan_loss_vs_float64_reference(backend, mode, layout):
    x64 = _logits(layout)
    for target_is_real in (True, False):
        ref_in = x64.detach().clone().requires_grad_()
        expected = ReferenceGANLoss(mode).double()(ref_in, target_is_real)
        expected.backward(torch.tensor(0.7, dtype=torch.float64))
        x = x64.float().requires_grad_()
        loss = gan_loss(x, mode, target_is_real)
        assert loss.dtype == torch.float32 and loss.dim() == 0
        (loss * 0.7).backward()
        assert_close(loss, expected, FP32_SINGLE_OP, "loss")
        assert_close(x.grad, ref_in.grad, FP32_SINGLE_OP, "grad")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target_is_real", [True, False], ids=["real", "fake"])
def test_gan_loss_at_infinite_and_huge_logits_is_the_references(backend, mode, target_is_real):
    """Diverged logits give the reference's loss, inf or nan alike (BCE at x = inf against
    a fake target is inf, not the nan of a naive x * t), and its gradient."""
    inf = float("inf")
    for special in (inf, -inf, float("nan"), 3e38, -3e38):
        x = torch.tensor([[special, 0.5], [-2.0, 4.0]])
        ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
        expected = ReferenceGANLoss(mode)(ref_in, target_is_real)
        expected.backward()
        loss = gan_loss(ours_in, mode, target_is_real)
        loss.backward()
        what = f"{mode} loss at {special}"
        assert torch.equal(loss.isnan(), expected.isnan()), f"{what}: {loss} vs {expected}"
        assert torch.equal(loss.isinf(), expected.isinf()), f"{what}: {loss} vs {expected}"
        if torch.isfinite(expected):
            assert_close(loss, expected, FP32_SINGLE_OP, what)
        known = ref_in.grad.isfinite()
        assert torch.equal(ours_in.grad.isfinite(), known), f"{what}: {ours_in.grad}"
        assert_close(ours_in.grad[known], ref_in.grad[known], FP32_SINGLE_OP, f"{what}: gradient")


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
def test_l1_loss_vs_float64_reference(backend, layout):
    a64, b64 = _logits(layout), _logits(layout).flip(0) * 0.5
    a, b = a64.float().requires_grad_(), b64.float().requires_grad_()
    ra, rb = a64.detach().clone().requires_grad_(), b64.detach().clone().requires_grad_()
    assert_l1_loss_matches_float64(a, b, ra, rb)


@pytest.mark.parametrize("call,message", [
    (lambda: gan_loss(torch.ones(2, 2, dtype=torch.int64), "vanilla", True), "must be one of"),
    (lambda: gan_loss(torch.rand(2, 2), "hinge", True), "mode must be one of"),
    (lambda: gan_loss(torch.rand(2, 2), "lsgan", 1), "True or False"),
    (lambda: gan_loss(torch.rand(0), "lsgan", True), "is empty"),
    (lambda: l1_loss(torch.rand(2, 3), torch.rand(3, 2)), "same shape"),
    (lambda: l1_loss(torch.rand(2, 3), torch.rand(2, 3, dtype=torch.float16)), "same shape"),
], ids=["dtype", "mode", "target", "empty", "l1-shape", "l1-dtype"])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_l1_loss_of_two_dtypes_names_the_cast_f_l1_loss_would_make():
    """An autocast generator's bfloat16 output against a float32 target: F.l1_loss promotes,
    l1_loss refuses (its C++ kernel reads both as one dtype) and says which cast to make; made,
    it gives F.l1_loss's loss."""
    fake_b = torch.rand(2, 3, 4, 4).bfloat16()
    real_b = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=re.escape(
            "promote both to torch.float32: pass l1_loss(x.to(torch.float32), "
            "y.to(torch.float32))")):
        l1_loss(fake_b, real_b)
    assert_close(l1_loss(fake_b.to(torch.float32), real_b), F.l1_loss(fake_b, real_b),
                 FP32_SINGLE_OP, "the promoted pair")
    with pytest.raises(ValueError) as other_shape:   # no cast mends a shape: no cast advised
        l1_loss(fake_b, real_b[:1])
    assert "promote" not in str(other_shape.value)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("batch", [1, 64])
def test_gpu_patchgan_logits(monkeypatch, dtype, batch):
    force_backend(monkeypatch, "triton")
    x64 = torch.randn(batch, 1, 30, 30, device="cuda", dtype=torch.float64) * 2
    y64 = torch.rand(batch, 3, 256, 256, device="cuda", dtype=torch.float64)
    bound = FP32_SINGLE_OP if dtype == torch.float32 else 1e-2
    for mode in MODES:
        x = x64.to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        ref = x.detach().double().requires_grad_()
        expected = ReferenceGANLoss(mode).double().cuda()(ref, True)
        expected.backward()
        loss = gan_loss(x, mode, True)
        loss.backward()
        assert_close(loss, expected, bound, mode)
        assert_close(x.grad, ref.grad, bound, mode)
    a = y64.to(dtype).requires_grad_()
    b = (y64 * 0.5).to(dtype)
    assert_close(l1_loss(a, b), F.l1_loss(a.double(), b.double()), bound, "l1")


@pytest.mark.cuda
def test_gpu_opcheck_and_compile(monkeypatch):
    force_backend(monkeypatch, "triton")
    x = torch.randn(2, 1, 30, 30, device="cuda", requires_grad=True)
    y = torch.randn(2, 1, 30, 30, device="cuda", requires_grad=True)
    for mode in MODES:
        torch.library.opcheck(torch.ops.fastp2p.gan_loss_fwd.default, (x, mode, True))
    torch.library.opcheck(torch.ops.fastp2p.l1_loss_fwd.default, (x, y))
    compiled = torch.compile(lambda a, b: gan_loss(a, "vanilla", True) + l1_loss(a, b),
                             fullgraph=True)
    assert_close(compiled(x, y), gan_loss(x, "vanilla", True) + l1_loss(x, y), 1e-6, "compile")


def test_opcheck_on_cpu(backend):
    x = torch.randn(2, 1, 6, 6, requires_grad=True)
    y = torch.randn(2, 1, 6, 6, requires_grad=True)
    for mode in MODES:
        torch.library.opcheck(torch.ops.fastp2p.gan_loss_fwd.default, (x, mode, False))
    torch.library.opcheck(torch.ops.fastp2p.l1_loss_fwd.default, (x, y))


def test_half_gradients_do_not_underflow():
    """+-1/numel is below float16's smallest normal for large maps; the ops compute float16 in
    float32, so a loss-scaled gradient (x 65536, as GradScaler does) keeps its value."""
    gen = torch.Generator().manual_seed(11)
    x, y = (torch.randn(3, 1000, 1000, generator=gen).half().requires_grad_() for _ in range(2))
    scale = 65536.0
    (l1_loss(x, y) * scale).backward()
    expected = torch.sign(x.detach().float() - y.detach().float()) * (scale / x.numel())
    assert x.grad.dtype == torch.float16
    assert_close(x.grad, expected, 1e-3, "l1 grad x")
    assert_close(y.grad, -expected, 1e-3, "l1 grad y")
    logits = (torch.randn(3, 1000, 1000, generator=gen) * 2).half().requires_grad_()
    (gan_loss(logits, "wgangp", True) * scale).backward()
    assert_close(logits.grad, torch.full(logits.shape, -scale / logits.numel()), 1e-3, "wgan grad")
