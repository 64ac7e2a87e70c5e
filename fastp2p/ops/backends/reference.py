"""The reference backend: plain PyTorch with the contract's launchers (any device, no Triton);
also what the registry runs for an op another backend lacks.

``norm_act_fwd`` is the shared oracle of ``norm_act_reference``; the backward and the losses
are written out here with the same formulas the kernels implement, in float32 (or float64 when
the inputs are float64), so that this backend is also a readable statement of the math.
"""
import torch
import torch.nn.functional as F

from fastp2p.ops import norm_act_reference
from fastp2p.ops.definitions import count_batch
from fastp2p.ops.dropout_rng import dropout_keep_mask

NAME = "reference"
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

__all__ = ["DTYPES", "NAME",
           "available", "d_step_losses_fwd", "g_step_losses_fwd", "gan_loss_and_grad",
           "gan_loss_fwd", "l1_loss_fwd", "norm_act_bwd", "norm_act_fwd"]


def available() -> bool:
    return True


def _compute_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _int(value) -> int:
    """Seed/offset given as device scalars (the graph-replay form) become ints here."""
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)


def norm_act_fwd(x, weight, bias, running_mean, running_var, out, out_channel_offset, *, norm,
                 training, momentum, eps, activation, slope, dropout_p, seed, offset,
                 num_batches_tracked=None):
    """The oracle's norm_act_fwd, computed in float32 for half-precision inputs (a half-precision
    module's running statistics updated through float32 copies, copied back)."""
    dtype = _compute_dtype(x)
    cast = (lambda t: None if t is None else t.to(dtype))
    count_batch(num_batches_tracked, norm, training, running_mean)
    running = (cast(running_mean), cast(running_var))
    result = norm_act_reference.norm_act_fwd(
        x.to(dtype), cast(weight), cast(bias), *running, out,
        out_channel_offset, norm=norm, training=training, momentum=momentum, eps=eps,
        activation=activation, slope=slope, dropout_p=dropout_p, seed=_int(seed),
        offset=_int(offset))
    for given, used in zip((running_mean, running_var), running):
        if used is not given:
            given.copy_(used)
    return result


def norm_act_bwd(grad_out_slice, x, weight, bias, mean, rstd, *, norm, activation, slope,
                 dropout_p, seed, offset, training=True):
    """(grad_x, grad_weight, grad_bias) of norm_act_fwd from its saved (mean, rstd).

    With z = x_hat * w + b and y = dropout(act(z)): g = dy * keep / (1 - p) * act'(z);
    grad_b = sum g, grad_w = sum g * x_hat, and where the statistics come from x
    grad_x = rstd * w * (g - mean(g) - x_hat * mean(g * x_hat)) over the normalized group.
    """
    dtype = _compute_dtype(x)
    x_hat = x.to(dtype)
    if norm != "none":
        # Saved statistics are (N, C) for instance norm, (C,) for batch norm: as (N|1, C, 1, 1).
        mean, rstd = (t.to(dtype).reshape(-1, x.shape[1], 1, 1) for t in (mean, rstd))
        x_hat = (x_hat - mean) * rstd
    affine = weight is not None
    w = weight.to(dtype)[None, :, None, None] if affine else None
    z = x_hat * w + bias.to(dtype)[None, :, None, None] if affine else x_hat
    g = grad_out_slice.to(dtype)
    if dropout_p > 0:
        keep = dropout_keep_mask(tuple(x.shape), dropout_p, _int(seed), _int(offset),
                                 device=x.device)
        g = torch.where(keep, g / (1 - dropout_p), torch.zeros_like(g))
    if activation == "relu":
        g = torch.where(z > 0, g, torch.zeros_like(g))
    elif activation == "leaky_relu":
        g = torch.where(z > 0, g, g * slope)
    grad_weight = grad_bias = None
    if affine:
        grad_weight = (g * x_hat).sum((0, 2, 3)).to(weight.dtype)
        grad_bias = g.sum((0, 2, 3)).to(bias.dtype)
    g_hat = g * w if affine else g
    if norm == "none":
        grad_x = g_hat
    else:
        grad_x = g_hat * rstd
        if norm == "instance" or training:
            dims = (2, 3) if norm == "instance" else (0, 2, 3)
            grad_x = rstd * (g_hat - g_hat.mean(dims, keepdim=True)
                             - x_hat * (g_hat * x_hat).mean(dims, keepdim=True))
    grad_x = grad_x.to(x.dtype)
    return grad_x, grad_weight, grad_bias


def _target(target_is_real):
    return 1.0 if target_is_real else 0.0


def gan_loss_and_grad(logits, mode, target_is_real):
    """(loss, d loss / d logits), both in the compute dtype (float32, or float64); torch ops,
    differentiable in the logits (the losses' backward that builds a graph uses them)."""
    x = logits.to(_compute_dtype(logits))
    numel = x.numel()
    target = _target(target_is_real)
    if mode == "vanilla":
        loss = F.binary_cross_entropy_with_logits(x, torch.full_like(x, target))
        grad = (torch.sigmoid(x) - target) / numel
    elif mode == "lsgan":
        loss = F.mse_loss(x, torch.full_like(x, target))
        grad = (x - target) * (2.0 / numel)  # as torch: 2 (x - t) alone overflows near max
    else:
        sign = -1.0 if target_is_real else 1.0
        loss = sign * x.mean()
        grad = torch.full_like(x, sign / numel)
    return loss, grad


def gan_loss_fwd(logits, *, mode, target_is_real):
    """(loss, d loss / d logits): BCE-with-logits / MSE mean against 1 or 0, or the WGAN mean;
    the loss in the compute dtype (float64 for float64 logits, else float32)."""
    loss, grad = gan_loss_and_grad(logits, mode, target_is_real)
    return loss, grad.to(logits.dtype)


def l1_loss_fwd(x, y):
    """(mean |x - y| in the compute dtype, d loss / d x); d loss / d y is its negative."""
    dtype = _compute_dtype(x)
    diff = x.to(dtype) - y.to(dtype)
    return diff.abs().mean(), (torch.sign(diff) / diff.numel()).to(x.dtype)


def _add_to_tally(part_a, part_b, tally):
    """LossTally's update, with device ops only (no host sync): the sums, the step, the first
    step with a non-finite part."""
    sums, (i, j) = tally.loss_sums, tally.positions
    sums[i] += part_a
    sums[j] += part_b
    step = tally.device_step + 1
    if tally.advance_step:
        tally.device_step.copy_(step)
    first = tally.first_nonfinite_step
    newly_bad = ~(torch.isfinite(part_a) & torch.isfinite(part_b)) & (first == 0)
    first.copy_(torch.where(newly_bad, step, first))


def d_step_losses_fwd(logits_fake, logits_real, *, mode, tally=None):
    """The discriminator step's 0.5 (L_fake + L_real), its parts and its gradients."""
    loss_fake, grad_fake = gan_loss_and_grad(logits_fake, mode, False)
    loss_real, grad_real = gan_loss_and_grad(logits_real, mode, True)
    loss_fake, loss_real = loss_fake.float(), loss_real.float()
    if tally is not None:
        _add_to_tally(loss_fake, loss_real, tally)
    losses = torch.stack(((loss_fake + loss_real) * 0.5, loss_fake, loss_real))
    return losses, (grad_fake * 0.5).to(logits_fake.dtype), (grad_real * 0.5).to(logits_real.dtype)


def g_step_losses_fwd(logits, fake_b, real_b, *, mode, lambda_l1, tally=None):
    """The generator step's L_GAN + lambda L1, its parts and its gradients."""
    loss_gan, grad_logits = gan_loss_and_grad(logits, mode, True)
    dtype = _compute_dtype(fake_b)
    diff = fake_b.to(dtype) - real_b.to(dtype)
    loss_gan, loss_l1 = loss_gan.float(), diff.abs().mean().float() * lambda_l1
    if tally is not None:
        _add_to_tally(loss_gan, loss_l1, tally)
    losses = torch.stack((loss_gan + loss_l1, loss_gan, loss_l1))
    grad_fake_b = torch.sign(diff) / diff.numel() * lambda_l1
    return losses, grad_logits.to(logits.dtype), grad_fake_b.to(fake_b.dtype)
