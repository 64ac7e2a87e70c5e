"""d_step_losses / g_step_losses (fastp2p.ops.step_losses): the values and gradients of one fused
pass against the float64 reference losses (F.binary_cross_entropy_with_logits, F.mse_loss, the
WGAN mean, F.l1_loss), every GAN mode, through the Triton kernels (interpreted on CPU) and the
reference backend, with NaN-poisoned output buffers so an unwritten element fails."""
import pytest
import torch
import torch.nn.functional as F

from fastp2p.ops.step_losses import (d_step_losses, d_step_losses_and_grads, g_step_losses,
                                     g_step_losses_and_grads)
from helpers.tolerances import FP32_SINGLE_OP, assert_close, assert_storage_close
from helpers.triton_interpreter import CPU_BACKEND_PARAMS

MODES = ["vanilla", "lsgan", "wgangp"]
# The C++ backend has no step-loss launchers (it runs the reference's, warned): not run twice.
BACKENDS = [p for p in CPU_BACKEND_PARAMS if getattr(p, "values", (p,))[0] != "cpp"]
# A grad_output of three different weights whose sums the backward scales the saved gradient of
# losses[0] by (w0 + 2 w1, w0 + 2 w2 for D; w0 + w1, w0 + w2 for G) are powers of two: the
# scaling of a 16-bit gradient is exact, so one rounding remains, the kernel's.
GRAD_OUTPUT = torch.tensor([1.5, -0.5, -1.0], dtype=torch.float64)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# (N, C, H, W) of the logits and the layout: 1800 elements is a partial second block of 1024.
SHAPES = {"1x1x5x7": ((1, 1, 5, 7), "nchw"), "2x1x30x30": ((2, 1, 30, 30), "nchw"),
          "2x2x4x5-nhwc": ((2, 2, 4, 5), "nhwc"), "2x2x6x5-strided": ((2, 2, 6, 5), "strided")}


def _random(shape, layout, seed, scale=3.0):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64) * scale
    if layout == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        return x[:, :, ::2]
    return x


def assert_losses_close(losses, expected, what):
    """Each of [total, part_a, part_b] on its own: a small part must not hide in the norm."""
    for index, name in enumerate(("total", "part a", "part b")):
        assert_close(losses[index], expected[index], FP32_SINGLE_OP, f"{what} {name}")


def reference_gan_loss(x, mode, target_is_real):
    """The reference GANLoss with its default labels, in the dtype of x."""
    if mode == "wgangp":
        return -x.mean() if target_is_real else x.mean()
    target = torch.full_like(x, 1.0 if target_is_real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(x, target)
    return F.mse_loss(x, target)


@pytest.fixture
def poisoned_outputs(monkeypatch):
    """Every float tensor the launchers allocate starts as NaN (gradients, partial sums, the
    losses), so an element a kernel does not write shows up as NaN."""
    empty, empty_like = torch.empty, torch.empty_like

    def poison(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t
    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(empty_like(*a, **k)))


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("shape_id", sorted(SHAPES))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_d_step_losses_vs_float64_reference(backend, poisoned_outputs, mode, shape_id, dtype):
    """float32 logits, or bfloat16 as the autocast discriminator writes them (float16 is
    computed in float32); the reference sees the same (rounded) values in float64."""
    shape, layout = SHAPES[shape_id]
    dtype = DTYPES[dtype]
    fake64, real64 = (_random(shape, layout, seed).to(dtype).double() for seed in (1, 2))
    ref_fake, ref_real = (t.detach().clone().requires_grad_() for t in (fake64, real64))
    ref_parts = (reference_gan_loss(ref_fake, mode, False),
                 reference_gan_loss(ref_real, mode, True))
    expected = torch.stack(((ref_parts[0] + ref_parts[1]) * 0.5, *ref_parts))
    weights = GRAD_OUTPUT
    (expected * weights).sum().backward(retain_graph=True)  # expected[0] differentiated below

    fake, real = (t.to(dtype).requires_grad_() for t in (fake64, real64))
    losses = d_step_losses(fake, real, mode)
    assert losses.dtype == torch.float32 and losses.shape == (3,)
    (losses * weights.float()).sum().backward()
    interpreted = backend == "triton"  # its bf16 stores round toward zero
    assert fake.grad.dtype == real.grad.dtype == dtype
    assert_losses_close(losses, expected, "losses")
    assert_storage_close(fake.grad, ref_fake.grad, "grad fake", interpreted)
    assert_storage_close(real.grad, ref_real.grad, "grad real", interpreted)

    values, grad_fake, grad_real = d_step_losses_and_grads(fake.detach(), real.detach(), mode)
    total_fake, total_real = torch.autograd.grad(expected[0], (ref_fake, ref_real))
    assert_losses_close(values, expected, "losses (and_grads)")
    assert_storage_close(grad_fake, total_fake, "d loss_D / d fake", interpreted)
    assert_storage_close(grad_real, total_real, "d loss_D / d real", interpreted)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("shape_id", sorted(SHAPES))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_g_step_losses_vs_float64_reference(backend, poisoned_outputs, mode, shape_id, dtype):
    """logits and fake_b in float32, or bfloat16 / float16 as autocast networks write them
    (real_b, the input batch, float32); the reference sees the same (rounded) values in
    float64."""
    shape, layout = SHAPES[shape_id]
    fake_b_dtype = DTYPES[dtype]
    lambda_l1 = 100.0
    logits64 = _random((shape[0], 1, 3, 4), "nchw", 3).to(fake_b_dtype).double()
    fake_b64 = _random(shape, layout, 4, scale=0.5).to(fake_b_dtype).double()
    real_b64 = _random(shape, layout, 5, scale=0.5)
    refs = [t.detach().clone().requires_grad_() for t in (logits64, fake_b64, real_b64)]
    gan, l1 = reference_gan_loss(refs[0], mode, True), F.l1_loss(refs[1], refs[2]) * lambda_l1
    expected = torch.stack((gan + l1, gan, l1))
    weights = GRAD_OUTPUT
    (expected * weights).sum().backward(retain_graph=True)  # expected[0] differentiated below

    logits = logits64.to(fake_b_dtype).requires_grad_()
    fake_b = fake_b64.to(fake_b_dtype).requires_grad_()
    real_b = real_b64.float().requires_grad_()
    losses = g_step_losses(logits, fake_b, real_b, mode, lambda_l1)
    (losses * weights.float()).sum().backward()
    interpreted = backend == "triton"  # its bf16 stores round toward zero
    assert logits.grad.dtype == fake_b.grad.dtype == fake_b_dtype
    assert real_b.grad.dtype == torch.float32
    assert_losses_close(losses, expected, "losses")
    assert_storage_close(logits.grad, refs[0].grad, "grad logits", interpreted)
    assert_storage_close(fake_b.grad, refs[1].grad, "grad fake_b", interpreted)
    assert_storage_close(real_b.grad, refs[2].grad, "grad real_b", interpreted)

    values, grad_logits, grad_fake_b = g_step_losses_and_grads(
        logits.detach(), fake_b.detach(), real_b.detach(), mode, lambda_l1)
    total_logits, total_fake_b = torch.autograd.grad(expected[0], refs[:2])
    assert_losses_close(values, expected, "losses (and_grads)")
    assert_storage_close(grad_logits, total_logits, "d loss_G / d logits", interpreted)
    assert_storage_close(grad_fake_b, total_fake_b, "d loss_G / d fake_b", interpreted)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_differently_laid_out_real_b_is_read_by_value(backend):
    """fake_b channels-last, real_b contiguous: same losses as with matching strides."""
    fake_b = _random((2, 3, 4, 5), "nhwc", 6).float()
    real_b = _random((2, 3, 4, 5), "nchw", 7).float()
    logits = _random((2, 1, 3, 3), "nchw", 8).float()
    mixed = g_step_losses_and_grads(logits, fake_b, real_b, "lsgan", 10.0)
    matched = g_step_losses_and_grads(logits, fake_b, real_b.contiguous(
        memory_format=torch.channels_last), "lsgan", 10.0)
    for a, b in zip(mixed, matched):
        assert torch.equal(a, b)


@pytest.mark.parametrize("call,message", [
    (lambda: d_step_losses(torch.rand(2, 2), torch.rand(2, 2), "hinge"), "mode must be one of"),
    (lambda: d_step_losses(torch.rand(2, 2), torch.ones(2, 2, dtype=torch.int64), "lsgan"),
     "logits_real must be one of"),
    (lambda: d_step_losses(torch.rand(0), torch.rand(2), "lsgan"), "logits_fake is empty"),
    (lambda: g_step_losses(torch.rand(2), torch.rand(2, 3), torch.rand(3, 2), "lsgan", 1.0),
     "same shape"),
    (lambda: g_step_losses(torch.rand(2), torch.rand(2), torch.rand(2), "lsgan", "100"),
     "lambda_l1 must be a number"),
    (lambda: d_step_losses(torch.rand(2), torch.rand(2), "lsgan", tally=(1, 2)),
     "tally must be a LossTally"),
], ids=["mode", "dtype", "empty", "l1-shape", "lambda", "tally"])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend",
                         [p for p in BACKENDS if getattr(p, "values", (p,))[0] == "triton"],
                         indirect=True)
def test_finishing_loop_over_many_partial_sums(backend, monkeypatch, poisoned_outputs, mode):
    """At batch 64 fake_B spans 12,288 blocks, more than one finishing tile: with blocks of 16
    and finishing tiles of 4, a 2x3x10x10 image (38 blocks) and 2x1x9x9 logits (11 blocks)
    walk the loop 10 and 3 times, against the float64 references."""
    from fastp2p.kernels import step_losses as step_kernels
    monkeypatch.setattr(step_kernels, "BLOCK", 16)
    monkeypatch.setattr(step_kernels, "FINISH_BLOCK", 4)
    logits64, real_logits64 = _random((2, 1, 9, 9), "nchw", 8), _random((2, 1, 9, 9), "nchw", 9)
    fake_b64 = _random((2, 3, 10, 10), "nchw", 10, scale=0.5)
    real_b64 = _random((2, 3, 10, 10), "nchw", 11, scale=0.5)
    gan_fake, gan_real = (reference_gan_loss(logits64, mode, False),
                          reference_gan_loss(real_logits64, mode, True))
    expected_d = torch.stack(((gan_fake + gan_real) * 0.5, gan_fake, gan_real))
    gan, l1 = reference_gan_loss(logits64, mode, True), F.l1_loss(fake_b64, real_b64) * 100.0
    expected_g = torch.stack((gan + l1, gan, l1))
    assert_losses_close(d_step_losses(logits64.float(), real_logits64.float(), mode),
                        expected_d, "D step")
    assert_losses_close(g_step_losses(logits64.float(), fake_b64.float(), real_b64.float(),
                                      mode, 100.0), expected_g, "G step")
