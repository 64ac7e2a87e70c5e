"""d_step_losses / g_step_losses: a pix2pix network step's losses and their gradients from one
fused pass (the backend's ``d_step_losses_fwd`` / ``g_step_losses_fwd``; on Triton one launch
over both tensors plus one tiny finishing launch).

Two forms of each, the same launches underneath:

- ``d_step_losses`` / ``g_step_losses`` return the (3,) float32 losses, differentiable: the
  forward computes the gradients with the losses (the gradient of a mean does not depend on
  its value), the backward multiplies them by grad_output (a backward that builds a graph,
  ``create_graph=True``, recomputes the GAN gradients from the saved logits as torch ops, which
  have a second derivative). They are ``autograd.Function``s,
  not torch.library custom ops: given a LossTally they update the engine's counters in place,
  and torch.library registers autograd formulas only for functional ops.
- ``d_step_losses_and_grads`` / ``g_step_losses_and_grads`` return the losses (no autograd)
  and the gradients, for a caller that back-propagates them itself with
  ``torch.autograd.backward(inputs, grads)``: the training engine, which so also skips the
  loss graph's backward launches (the ones filling grad_output and scaling by it).

Nothing here syncs with the host (grids come from shapes), so both forms can be captured in a
CUDA graph; the tally then advances on every replay.
"""
import torch

from fastp2p.kernels.loss_tally import LossTally
from fastp2p.ops.backends import backend_for
from fastp2p.ops.definitions import GAN_MODES
from fastp2p.ops.losses import check_loss_input, differentiable_gan_grad

__all__ = ["LossTally", "d_step_losses", "d_step_losses_and_grads", "g_step_losses",
           "g_step_losses_and_grads"]


def _check_common(mode, tally, device):
    if mode not in GAN_MODES:
        raise ValueError(f"mode must be one of {GAN_MODES}, got {mode!r}")
    if tally is not None:
        if not isinstance(tally, LossTally):
            raise ValueError(f"tally must be a LossTally or None, got {type(tally).__name__}")
        tally.check(device)


def _widen_half(t):
    """float16 computed as float32: its +-1/numel gradients would underflow (ops/losses.py)."""
    return t.float() if isinstance(t, torch.Tensor) and t.dtype == torch.float16 else t


def _d_launch(logits_fake, logits_real, mode, tally):
    check_loss_input("logits_fake", logits_fake)
    check_loss_input("logits_real", logits_real, logits_fake.device)
    _check_common(mode, tally, logits_fake.device)
    fake, real = _widen_half(logits_fake), _widen_half(logits_real)
    backend = backend_for(fake.device, fake.dtype, real.dtype)
    losses, grad_fake, grad_real = backend.d_step_losses_fwd(fake.detach(), real.detach(),
                                                             mode=mode, tally=tally)
    return losses, grad_fake.to(logits_fake.dtype), grad_real.to(logits_real.dtype)


def _g_launch(logits, fake_b, real_b, mode, lambda_l1, tally):
    check_loss_input("logits", logits)
    check_loss_input("fake_b", fake_b, logits.device)
    check_loss_input("real_b", real_b, logits.device)
    if fake_b.shape != real_b.shape:
        raise ValueError(f"fake_b {tuple(fake_b.shape)} and real_b {tuple(real_b.shape)} must "
                         "have the same shape")
    if isinstance(lambda_l1, bool) or not isinstance(lambda_l1, (int, float)):
        raise ValueError(f"lambda_l1 must be a number, got {lambda_l1!r}")
    _check_common(mode, tally, logits.device)
    widened = [_widen_half(t) for t in (logits, fake_b, real_b)]
    backend = backend_for(logits.device, *(t.dtype for t in widened))
    losses, grad_logits, grad_fake_b = backend.g_step_losses_fwd(
        *(t.detach() for t in widened), mode=mode, lambda_l1=float(lambda_l1), tally=tally)
    return losses, grad_logits.to(logits.dtype), grad_fake_b.to(fake_b.dtype)


class _DStepLosses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_fake, logits_real, mode, tally):
        losses, grad_fake, grad_real = _d_launch(logits_fake, logits_real, mode, tally)
        # The logits by reference (no copy), for a backward that builds a graph.
        ctx.save_for_backward(grad_fake, grad_real, logits_fake, logits_real)
        ctx.mode = mode
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        # losses = [0.5 (f + r), f, r]; the saved gradients are those of losses[0].
        grad_fake, grad_real, logits_fake, logits_real = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the saved gradients are constants
            grad_fake = 0.5 * differentiable_gan_grad(logits_fake, ctx.mode, False)
            grad_real = 0.5 * differentiable_gan_grad(logits_real, ctx.mode, True)
        g = grad_losses.float()
        return ((grad_fake * (g[0] + 2.0 * g[1])).to(logits_fake.dtype),
                (grad_real * (g[0] + 2.0 * g[2])).to(logits_real.dtype), None, None)


class _GStepLosses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, fake_b, real_b, mode, lambda_l1, tally):
        losses, grad_logits, grad_fake_b = _g_launch(logits, fake_b, real_b, mode, lambda_l1,
                                                     tally)
        # The logits by reference (no copy), for a backward that builds a graph; the L1's
        # gradient (sign / numel) has a zero derivative: its saved form serves there too.
        ctx.save_for_backward(grad_logits, grad_fake_b, logits)
        ctx.real_b_dtype, ctx.mode = real_b.dtype, mode
        ctx.l1_weight = float(lambda_l1) / fake_b.numel()
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        # losses = [gan + l1, gan, l1]; the saved gradients are those of losses[0].
        grad_logits, grad_fake_b, logits = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the saved gradient is a constant
            grad_logits = differentiable_gan_grad(logits, ctx.mode, True)
        g = grad_losses.float()
        scaled_fake_b = grad_fake_b * (g[0] + g[2])
        grad_real_b = None
        if ctx.needs_input_grad[2]:
            # -sign(fake_b - real_b) * lambda / numel * weight, from the sign and a float64
            # coefficient rounded once to real_b's dtype: a float32 (float64) real_b gets a
            # float32- (float64-) exact gradient, not fake_b's 16-bit one widened
            weight = grad_losses[0].double() + grad_losses[2].double()
            grad_real_b = (grad_fake_b.sign().to(ctx.real_b_dtype)
                           * (-ctx.l1_weight * weight).to(ctx.real_b_dtype))
        return ((grad_logits * (g[0] + g[1])).to(logits.dtype),
                scaled_fake_b.to(grad_fake_b.dtype), grad_real_b, None, None, None)


def d_step_losses(logits_fake, logits_real, mode, *, tally=None):
    """The discriminator step's losses: float32 (3,) ``[0.5 (L_fake + L_real), L_fake,
    L_real]``, differentiable w.r.t. both logits.

    ``logits_fake`` / ``logits_real``: D's outputs on the (A, fake_B) and (A, B) pairs (the
    PatchGAN's (N, 1, 30, 30) maps), float32, bfloat16 or float16, or float64 (the registry
    runs it on the reference backend; the losses stay float32), any layout, one device;
    ``mode``: "vanilla" (BCE with logits), "lsgan" (MSE) or "wgangp" (+mean fake, -mean real),
    as GANLoss with its default labels. ``tally``: the
    engine's LossTally; (L_fake, L_real) are added to its sums.

    Example::

        loss_D, loss_fake, loss_real = d_step_losses(netD(fake_pair), netD(real_pair),
                                                     "vanilla").unbind()
        loss_D.backward()
    """
    # float16 widened before the Function: autograd scales the float32 gradient by
    # grad_output before casting it back (a loss-scaled gradient keeps its value).
    return _DStepLosses.apply(_widen_half(logits_fake), _widen_half(logits_real), mode, tally)


def g_step_losses(logits, fake_b, real_b, mode, lambda_l1, *, tally=None):
    """The generator step's losses: float32 (3,) ``[L_GAN + lambda L1, L_GAN, lambda L1]``,
    differentiable w.r.t. logits, fake_b and real_b.

    ``logits``: D's output on the (A, fake_B) pairs (target real), dtypes and layouts as in
    ``d_step_losses``; ``fake_b`` / ``real_b``: the same shape on the same device, each
    float32, bfloat16 or float16 (the L1 is computed in float32: a bf16 fake_b needs no float32
    copy); ``lambda_l1``: the L1 weight (100 in pix2pix).

    Example::

        loss_G = g_step_losses(netD(fake_pair), fake_b, real_b, "vanilla", 100.0)[0]
        loss_G.backward()
    """
    return _GStepLosses.apply(*(_widen_half(t) for t in (logits, fake_b, real_b)), mode,
                              lambda_l1, tally)


def d_step_losses_and_grads(logits_fake, logits_real, mode, *, tally=None):
    """``(losses, grad_fake, grad_real)``: d_step_losses' values (no autograd) and the
    gradients of losses[0] w.r.t. each logits tensor, in its dtype; back-propagate them with
    ``torch.autograd.backward((logits_fake, logits_real), (grad_fake, grad_real))``."""
    return _d_launch(logits_fake, logits_real, mode, tally)


def g_step_losses_and_grads(logits, fake_b, real_b, mode, lambda_l1, *, tally=None):
    """``(losses, grad_logits, grad_fake_b)``: g_step_losses' values (no autograd) and the
    gradients of losses[0] w.r.t. logits and fake_b (w.r.t. real_b it is -grad_fake_b)."""
    return _g_launch(logits, fake_b, real_b, mode, lambda_l1, tally)
