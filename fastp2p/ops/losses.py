"""gan_loss and l1_loss: loss and gradient from one pass, as torch.library custom ops.

They are pure functions of their inputs, so they are ``torch.library.custom_op``s with a fake
(meta) implementation and a registered autograd formula: torch.compile traces them without a
graph break and CUDA graphs capture them. The forward computes the gradient along with the
loss (the kernels write both in one pass); the backward only scales it by grad_output —
except in a backward that builds a graph (``create_graph=True``, a gradient penalty), where
that saved gradient would be a constant: there the GAN loss's gradient is recomputed from the
saved logits as torch ops (``differentiable_gan_grad``), so its second derivative is there.
(The L1's is 0: the saved sign / numel is exact there, and the gradient stays differentiable
in grad_output.)
"""
import torch
import torch.nn.functional as F

from fastp2p.ops.backends import backend_for, backend_forced
from fastp2p.ops.backends.reference import gan_loss_and_grad
from fastp2p.ops.definitions import GAN_MODES, OP_DTYPES


def _widen_half(t: torch.Tensor) -> torch.Tensor:
    """float16 as float32: the per-element gradient +-1/numel (1/12.5M for an L1 over a batch
    of 64 256x256 RGB images) underflows in float16; autograd casts the gradient back."""
    return t.float() if t.dtype == torch.float16 else t


def check_loss_input(name, t, device=None):
    """A loss op's tensor argument: a tensor of an op dtype, not empty, on ``device`` if given."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in OP_DTYPES:
        raise ValueError(f"{name} must be one of {[str(d) for d in OP_DTYPES]}, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} like the logits")


@torch.library.custom_op("fastp2p::gan_loss_fwd", mutates_args=())
def _gan_loss_fwd(logits: torch.Tensor, mode: str, target_is_real: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    backend = backend_for(logits.device, logits.dtype)
    loss, grad = backend.gan_loss_fwd(logits, mode=mode, target_is_real=target_is_real)
    return loss, grad


def _loss_dtype(t: torch.Tensor) -> torch.dtype:
    """A loss's dtype: float32, or float64 for float64 inputs (the reference backend's)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@_gan_loss_fwd.register_fake
def _(logits, mode, target_is_real):
    return logits.new_empty((), dtype=_loss_dtype(logits)), torch.empty_like(logits)


def differentiable_gan_grad(logits, mode, target_is_real):
    """d loss / d logits as torch ops of the logits, in the compute dtype: what a backward that
    builds a graph (grad mode on there: create_graph=True) uses in place of the kernels' saved
    gradient, a constant."""
    return gan_loss_and_grad(logits, mode, target_is_real)[1]


def _gan_loss_setup(ctx, inputs, output):
    # The logits by reference (no copy), for a backward that builds a graph.
    ctx.save_for_backward(output[1], inputs[0])
    ctx.input_dtype, ctx.mode, ctx.target_is_real = inputs[0].dtype, inputs[1], inputs[2]
    # The gradient output is never differentiated: no logits-sized zero fill for its gradient.
    ctx.set_materialize_grads(False)


def _gan_loss_backward(ctx, grad_loss, grad_grad):
    if grad_loss is None:
        return None, None, None
    grad_logits, logits = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True
        grad_logits = differentiable_gan_grad(logits, ctx.mode, ctx.target_is_real)
    return (grad_logits * grad_loss).to(ctx.input_dtype), None, None


_gan_loss_fwd.register_autograd(_gan_loss_backward, setup_context=_gan_loss_setup)


@torch.library.custom_op("fastp2p::l1_loss_fwd", mutates_args=())
def _l1_loss_fwd(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss, grad = backend_for(x.device, x.dtype).l1_loss_fwd(x, y)
    return loss, grad


@_l1_loss_fwd.register_fake
def _(x, y):
    return x.new_empty((), dtype=_loss_dtype(x)), torch.empty_like(x)


def _l1_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.dtypes = (inputs[0].dtype, inputs[1].dtype)
    ctx.set_materialize_grads(False)  # as _gan_loss_setup


def _l1_backward(ctx, grad_loss, grad_grad):
    if grad_loss is None:
        return None, None
    (grad_x,) = ctx.saved_tensors
    scaled = grad_x * grad_loss
    # The training step's target image needs no gradient: no negated copy of fake_B's size.
    grad_y = (-scaled).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
    return scaled.to(ctx.dtypes[0]), grad_y


_l1_loss_fwd.register_autograd(_l1_backward, setup_context=_l1_setup)


def gan_loss(logits: torch.Tensor, mode: str, target_is_real: bool) -> torch.Tensor:
    """The PatchGAN loss of ``logits`` against the all-real / all-fake target: 0-dim float32,
    float64 for float64 logits.

    ``logits``: any shape (the PatchGAN's (N, 1, 30, 30) map), float32, bfloat16 or float16 (on
    the device's fast backend) or float64 (computed in float64 by the reference backend, which
    the registry picks for it), any layout; ``mode``: vanilla: BCE-with-logits mean vs
    1/0; lsgan: MSE mean vs 1/0; wgangp: -mean (real) or +mean (fake). The gradient comes from
    the same pass and has the logits' dtype.

    Example::

        loss = gan_loss(discriminator(torch.cat([a, fake_b], 1)), "vanilla", True)
    """
    check_loss_input("gan_loss logits", logits)
    if mode not in GAN_MODES:
        raise ValueError(f"gan_loss mode must be one of {GAN_MODES}, got {mode!r}")
    if not isinstance(target_is_real, bool):
        raise ValueError(f"target_is_real must be True or False, got {target_is_real!r}")
    return _gan_loss_fwd(_widen_half(logits), mode, target_is_real)[0]


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean |x - y| as a 0-dim float32 tensor (float64 for float64 inputs), with gradients for
    both.

    ``x`` / ``y``: the same shape, dtype (float32, bfloat16 or float16; float64, which runs on
    the reference backend) and device, any layout (channels-last stays; a mismatched pair of
    strides costs one copy of y). Unlike F.l1_loss, a pair of two dtypes (an autocast
    generator's bfloat16 output against a float32 target) is refused, not promoted: the C++
    kernel reads both as one type, so promoting would copy one of them on every call; the
    ValueError names the dtype F.l1_loss would compute in, to cast both to.

    Example::

        loss = l1_loss(fake_b, real_b) * 100.0
    """
    check_loss_input("l1_loss x", x)
    check_loss_input("l1_loss y", y)
    if x.shape != y.shape or x.device != y.device or x.dtype != y.dtype:
        raise ValueError(f"l1_loss expects x and y of the same shape, dtype and device, got "
                         f"{tuple(x.shape)} {x.dtype} {x.device} and {tuple(y.shape)} {y.dtype} "
                         f"{y.device}{_promotion_advice(x, y)}")
    return _l1_loss_fwd(_widen_half(x), _widen_half(y))[0]


def _promotion_advice(x: torch.Tensor, y: torch.Tensor) -> str:
    """For a pair that differs in dtype alone, what computing as F.l1_loss does takes: the cast
    it would make (torch's type promotion), made by the caller (no cast mends a shape or a
    device)."""
    if x.dtype == y.dtype or x.shape != y.shape or x.device != y.device:
        return ""
    common = str(torch.promote_types(x.dtype, y.dtype))
    return (f" (F.l1_loss would promote both to {common}: pass "
            f"l1_loss(x.to({common}), y.to({common})))")


def l1_loss_for(device: torch.device):
    """The L1 loss a training step on ``device`` computes: ``l1_loss`` (loss and gradient in one
    pass) on CUDA and wherever ``FASTP2P_BACKEND`` forces a backend; elsewhere ``F.l1_loss``, so
    that the CPU step stays the reference's bit for bit. Asked once, when the engine is built."""
    return l1_loss if device.type == "cuda" or backend_forced() else F.l1_loss
