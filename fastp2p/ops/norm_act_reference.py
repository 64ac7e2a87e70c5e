"""The plain-PyTorch meaning of the fused norm-act op: the math of the reference backend
(``fastp2p.ops.backends.reference``, whose ``norm_act_fwd`` has the launchers' signature and
adds the batch count and the half-precision casts) and the test oracle.

``norm_act_math`` is the op's value; ``write_norm_act`` writes it into a channel slice of an
output and returns the statistics a backward needs. The backward of this path is autograd
through the same math; the kernels' backward is tested against it.
"""
import torch
import torch.nn.functional as F

from fastp2p.ops.definitions import ACTIVATIONS, NORMS
from fastp2p.ops.dropout_rng import dropout_keep_mask


def norm_act_math(x, weight, bias, running_mean, running_var, *, norm, training, momentum, eps,
                  activation, slope, dropout_p, seed, offset):
    """y = dropout(act(norm(x) * weight + bias)), computed in x's dtype (float64 for references).

    Batch norm in training updates running_mean / running_var in place like nn.BatchNorm2d.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if norm == "instance":
        y = F.instance_norm(x, weight=weight, bias=bias, eps=eps)
    elif norm == "batch":
        y = F.batch_norm(x, running_mean, running_var, weight, bias,
                         training=training or running_mean is None, momentum=momentum, eps=eps)
    else:
        y = x
        if weight is not None:
            y = y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
    if activation == "relu":
        y = F.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, slope)
    if dropout_p > 0:
        keep = dropout_keep_mask(tuple(y.shape), dropout_p, seed, offset, device=y.device)
        y = torch.where(keep, y / (1 - dropout_p), torch.zeros_like(y))
    return y


def write_norm_act(x, weight, bias, running_mean, running_var, out, out_channel_offset, *, norm,
                   training, momentum, eps, activation, slope, dropout_p, seed, offset):
    """Write norm-act(x) into ``out[:, out_channel_offset : out_channel_offset + C]``.

    Returns the statistics a backward would need, in float32 (float64 for float64 x, so that
    a float64 backward is float64 throughout): (mean, rstd) per (N, C) for instance norm, per C
    for batch norm (the running ones in eval), empty tensors for no norm.
    """
    channels = x.shape[1]
    y = norm_act_math(x, weight, bias, running_mean, running_var, norm=norm, training=training,
                      momentum=momentum, eps=eps, activation=activation, slope=slope,
                      dropout_p=dropout_p, seed=seed, offset=offset)
    out[:, out_channel_offset:out_channel_offset + channels].copy_(y)
    return _saved_statistics(x, running_mean, running_var, norm=norm, training=training, eps=eps)


def statistics_dtype(x) -> torch.dtype:
    """The dtype of write_norm_act's saved (mean, rstd): float32, or float64 for float64 x."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _saved_statistics(x, running_mean, running_var, *, norm, training, eps):
    if norm == "batch" and not (training or running_mean is None):
        dtype = statistics_dtype(x)
        return running_mean.to(dtype), torch.rsqrt(running_var.to(dtype) + eps)
    return statistics_of(x.detach(), norm=norm, eps=eps)


def statistics_of(x, *, norm, eps):
    """(mean, rstd) of x's own values in the statistics dtype: per (N, C) for instance norm, per
    C for batch norm (biased variance), empty tensors for no norm. Differentiable in x: the
    backward that builds a graph (create_graph) recomputes them from the saved x."""
    xs = x.to(statistics_dtype(x))
    if norm == "none":
        empty = xs.new_empty(0)
        return empty, empty
    var, mean = torch.var_mean(xs, dim=(2, 3) if norm == "instance" else (0, 2, 3),
                               unbiased=False)
    return mean, torch.rsqrt(var + eps)
