"""The reference backend: plain PyTorch with the contract's launchers (any device, no Triton);
also what the registry runs for an op another backend lacks.

``norm_act_fwd`` writes the shared oracle of ``norm_act_reference`` (``write_norm_act``); the
backward and the losses are written out here with the same formulas the kernels implement, in
float32 (or float64 when the inputs are float64), so that this backend is also a readable
statement of the math.
"""
import torch
import torch.nn.functional as F

from fastp2p.ops import norm_act_reference
from fastp2p.ops.definitions import count_batch
from fastp2p.ops.dropout_rng import dropout_keep_mask

NAME = "reference"
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

__all__ = ["DTYPES", "NAME",
           "adam_programs", "adam_step", "augment_pairs", "available", "d_step_losses_fwd",
           "g_step_losses_fwd", "gan_loss_and_grad", "gan_loss_fwd", "l1_loss_fwd",
           "norm_act_bwd", "norm_act_fwd"]


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
    result = norm_act_reference.write_norm_act(
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


# -- the optimizer step and the input pipeline (Triton's kernels: kernels/adam.py, augment.py) --
def adam_programs(numel, device):
    """1: the step below is whole-tensor ops, and any constant divides its ticket into steps."""
    return 1


def adam_step(master, exp_avg, exp_avg_sq, grad_copied, grad_own, copy, lr, ticket, hyper,
              num_programs):
    """kernels/adam.py's update written plainly, in its order of float32 operations (bias
    corrections in float64), with device ops only: no sync, so a CUDA graph can replay it."""
    step = (ticket // num_programs + 1).to(torch.float64)
    ticket.add_(num_programs)
    beta1, beta2, eps, weight_decay = hyper.unbind()
    neg_step_size = (lr.double() * -1.0 / (1 - beta1 ** step)).float()
    bias_correction2_sqrt = (1 - beta2 ** step).float().sqrt()
    grad = torch.cat((grad_copied.float(), grad_own))
    grad = torch.where(weight_decay != 0, grad + weight_decay.float() * master, grad)
    exp_avg.lerp_(grad, (1 - beta1).float())
    exp_avg_sq.mul_(beta2.float()).add_((1 - beta2).float() * grad * grad)
    master.add_(neg_step_size * exp_avg / (exp_avg_sq.sqrt() / bias_correction2_sqrt
                                           + eps.float()))
    copy.copy_(master[:copy.numel()])  # bf16: rounded to nearest even, as the kernel rounds


def _scale_into(pixels, out):
    """uint8 ``pixels`` as the CPU path's ToTensor + Normalize make them, (x / 255 - 0.5) / 0.5,
    computed as x / 127.5 - 1: the same float32 values (each step is the other's scaled by a
    power of two, which commutes with rounding), in two passes instead of four."""
    torch.div(pixels, 127.5, out=out)
    return out.sub_(1)


def augment_pairs(pairs, crop_x, crop_y, flip, *, crop_size, swap=False, dtype=torch.float32,
                  out_a=None, out_b=None):
    """The crops gathered in plain PyTorch, with the CPU path's exact float values. On the CPU
    each crop is scaled as it is cut (it is still in cache); elsewhere the crops are gathered
    into one uint8 batch and scaled in one pass."""
    count, _, double_width, channels = pairs.shape
    width = double_width // 2
    on_cpu = pairs.device.type == "cpu"
    scaled = torch.empty((2, count, crop_size, crop_size, channels), dtype=torch.float32,
                         device=pairs.device)
    crops = scaled if on_cpu else torch.empty(scaled.shape, dtype=torch.uint8,
                                              device=pairs.device)
    starts = (width, 0) if swap else (0, width)
    for n, (x, y, mirrored) in enumerate(zip(crop_x.tolist(), crop_y.tolist(), flip.tolist())):
        for side, start in enumerate(starts):
            crop = pairs[n, y:y + crop_size, start + x:start + x + crop_size]
            crop = crop.flip(1) if mirrored else crop
            if on_cpu:
                _scale_into(crop, scaled[side, n])
            else:
                crops[side, n] = crop
    if not on_cpu:
        _scale_into(crops, scaled)
    a, b = scaled.to(dtype).permute(0, 1, 4, 2, 3)      # NCHW views of NHWC memory
    return tuple(result if out is None else out.copy_(result)
                 for result, out in ((a, out_a), (b, out_b)))
