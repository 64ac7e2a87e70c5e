"""The fused convolution's meaning in a few lines of float64 torch: prologue (scale/shift,
activation, dropout mask) per source -> concatenation -> conv -> bias -> statistics."""
import torch
import torch.nn.functional as F

from fastp2p.ops.dropout_rng import dropout_keep_mask


def prologue(x, transform, slope):
    """dropout(act(x * scale + shift)) with the counter RNG's mask, in x's dtype."""
    if transform.scale is not None:
        view = (lambda t: t[:, :, None, None]) if transform.scale.dim() == 2 else (
            lambda t: t[None, :, None, None])
        x = x * view(transform.scale) + view(transform.shift)
    if transform.activation == "relu":
        x = torch.relu(x)
    elif transform.activation == "leaky_relu":
        x = F.leaky_relu(x, slope)
    if transform.dropout_p > 0:
        keep = dropout_keep_mask(x.shape, transform.dropout_p, int(transform.seed),
                                 int(transform.offset), device=x.device)
        x = torch.where(keep, x / (1 - transform.dropout_p), torch.zeros_like(x))
    return x


def conv_fused_reference(sources, transforms, weight, bias, *, stride, padding, transposed,
                         slope=0.2):
    """y = conv(cat(prologue_i(sources[i]))) + bias (autograd flows to every tensor given)."""
    a = torch.cat([prologue(s, t, slope) for s, t in zip(sources, transforms)], 1)
    conv = F.conv_transpose2d if transposed else F.conv2d
    return conv(a, weight, bias, stride=stride, padding=padding)


def statistics_reference(y, per_sample):
    """(mean, biased var) per (N, C) (instance norm) or per C (batch norm)."""
    dims = (2, 3) if per_sample else (0, 2, 3)
    return y.mean(dims), y.var(dims, unbiased=False)
