"""Double backward of the loss ops (a gradient penalty's second backward passes through them):
the first gradient built with create_graph=True and its grad_output a leaf, then a loss of that
gradient back-propagated — compared with the float64 reference losses (fastp2p.reference.GANLoss,
F.l1_loss and the step losses' sums), the first gradients and every leaf's second gradient:
GANLoss / gan_loss (vanilla, lsgan, wgangp; real and fake targets), l1_loss, d_step_losses,
g_step_losses. float32 on each CPU backend, float64. Before the fix GANLoss's second
derivative w.r.t. the logits was None (the saved gradient, a constant)."""
import pytest
import torch
import torch.nn.functional as F

import fastp2p
from fastp2p import reference
from fastp2p.ops import d_step_losses, g_step_losses, l1_loss
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import CPU_BACKEND_PARAMS

MODES = ["vanilla", "lsgan", "wgangp"]
# The C++ backend has no step-loss launchers (it runs the reference's, warned).
STEP_BACKENDS = [p for p in CPU_BACKEND_PARAMS if getattr(p, "values", (p,))[0] != "cpp"]


def _leaves(shapes, dtype, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=g, dtype=torch.float64) * 2).to(dtype).requires_grad_()
            for s in shapes]


def _double_backward(fn, inputs, grad_output):
    """(first gradients of fn(*inputs) w.r.t. the inputs, built with create_graph and
    ``grad_output`` a leaf; second gradients of a non-linear loss of them w.r.t. the inputs
    and grad_output)."""
    out = fn(*inputs)
    firsts = torch.autograd.grad(out, inputs, grad_output.to(out.dtype), create_graph=True)
    u = torch.Generator().manual_seed(4)
    loss = sum((f.double() * torch.randn(f.shape, generator=u, dtype=torch.float64)).sum()
               + f.double().square().sum() * 10.0 for f in firsts)
    return firsts, torch.autograd.grad(loss, [*inputs, grad_output], allow_unused=True)


def _compare(ours_fn, theirs_fn, shapes, grad_shape, dtype, what):
    inputs = _leaves(shapes, dtype)
    grad_output = _leaves([grad_shape], torch.float32, seed=5)[0]
    firsts, seconds = _double_backward(ours_fn, inputs, grad_output)
    inputs64 = [t.detach().double().requires_grad_() for t in inputs]
    grad_output64 = grad_output.detach().double().requires_grad_()
    ref_firsts, ref_seconds = _double_backward(theirs_fn, inputs64, grad_output64)
    for i, (actual, expected) in enumerate(zip(firsts, ref_firsts)):
        assert_close(actual, expected, FP32_SINGLE_OP, f"{what} first grad {i}")
    for i, (actual, expected) in enumerate(zip(seconds, ref_seconds)):
        if expected is None or expected.abs().max() == 0:  # L1 / WGAN: linear in the input
            assert actual is None or actual.abs().max() == 0, f"{what} second grad {i} not 0"
            continue
        assert actual is not None, f"{what}: no second gradient for leaf {i}"
        assert_close(actual, expected, FP32_SINGLE_OP, f"{what} second grad {i}")


def _gan_loss_case(mode, target_is_real, dtype, what):
    # (the reference's labels in float64 too: on torch 2.8 and 2.11 (not 2.13) the double
    # backward of mse_loss fails with a float32 label under float64 logits)
    ours, theirs = fastp2p.GANLoss(mode), reference.GANLoss(mode).double()
    _compare(lambda p: ours(p, target_is_real), lambda p: theirs(p, target_is_real),
             [(2, 1, 5, 6)], (), dtype, f"{what} GANLoss {mode}")


@pytest.mark.parametrize("target_is_real", [True, False], ids=["real", "fake"])
@pytest.mark.parametrize("mode", MODES)
def test_gan_loss_second_derivative_float32(backend, mode, target_is_real):
    _gan_loss_case(mode, target_is_real, torch.float32, backend)


@pytest.mark.parametrize("target_is_real", [True, False], ids=["real", "fake"])
@pytest.mark.parametrize("mode", MODES)
def test_gan_loss_second_derivative_float64(monkeypatch, mode, target_is_real):
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    _gan_loss_case(mode, target_is_real, torch.float64, "float64")


def test_l1_loss_second_derivative_float32(backend):
    _compare(l1_loss, F.l1_loss, [(2, 3, 4, 5)] * 2, (), torch.float32, f"{backend} l1_loss")


def test_l1_loss_second_derivative_float64(monkeypatch):
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    _compare(l1_loss, F.l1_loss, [(2, 3, 4, 5)] * 2, (), torch.float64, "float64 l1_loss")


@pytest.mark.parametrize("backend", STEP_BACKENDS, indirect=True)
@pytest.mark.parametrize("mode", MODES)
def test_step_losses_second_derivative(backend, mode):
    gan = reference.GANLoss(mode).double()   # (float64 labels: see _gan_loss_case)

    def d_reference(fake, real):
        f, r = gan(fake, False), gan(real, True)
        return torch.stack(((f + r) * 0.5, f, r))

    def g_reference(logits, fake_b, real_b):
        a, b = gan(logits, True), F.l1_loss(fake_b, real_b) * 100.0
        return torch.stack((a + b, a, b))

    _compare(lambda f, r: d_step_losses(f, r, mode), d_reference, [(2, 1, 5, 6)] * 2, (3,),
             torch.float32, f"{backend} d_step_losses {mode}")
    _compare(lambda p, f, r: g_step_losses(p, f, r, mode, 100.0), g_reference,
             [(2, 1, 5, 6), (2, 3, 4, 5), (2, 3, 4, 5)], (3,), torch.float32,
             f"{backend} g_step_losses {mode}")
