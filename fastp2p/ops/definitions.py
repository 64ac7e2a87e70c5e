"""Definitions every fused op, backend adapter and launcher shares: the accepted dtypes, the
names of norms / activations / GAN modes (their integer codes live beside the kernels, in
``fastp2p.kernels.codes``), and the allocation of outputs in the input's memory format.
"""
import torch

from fastp2p.kernels.codes import ACTIVATION_CODES, GAN_MODE_CODES, NORM_CODES

# Input dtypes the ops accept. Each backend declares the ones it computes (its DTYPES; Triton
# and C++: no float64); the registry (fastp2p.ops.backends) picks one that takes the call's.
OP_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
NORMS = tuple(NORM_CODES)
ACTIVATIONS = tuple(ACTIVATION_CODES)
GAN_MODES = tuple(GAN_MODE_CODES)

__all__ = ["ACTIVATIONS", "ACTIVATION_CODES", "GAN_MODES", "GAN_MODE_CODES", "NORMS",
           "NORM_CODES", "OP_DTYPES", "count_batch", "like_memory_format",
           "refuse_graph_of_backward"]


def count_batch(num_batches_tracked, norm: str, training: bool, running_mean) -> None:
    """nn.BatchNorm2d's ``num_batches_tracked += 1`` as a PyTorch op, where no kernel counts the
    batch (the C++ and reference backends, the inference plans): only a batch norm in training
    with running statistics counts."""
    if (num_batches_tracked is not None and norm == "batch" and training
            and running_mean is not None):
        with torch.no_grad():
            num_batches_tracked.add_(1)


def refuse_graph_of_backward(what: str, instead: str) -> None:
    """Raise where a backward with no differentiable form runs with grad mode on: autograd does
    so exactly for ``create_graph=True`` (a gradient penalty, a higher derivative), whose
    gradients would otherwise come back as silent constants. ``instead``: what to turn off."""
    if torch.is_grad_enabled():
        raise RuntimeError(f"{what}: its backward is not differentiable, so a gradient of a "
                           f"gradient (create_graph=True, e.g. a gradient penalty) cannot pass "
                           f"through it; {instead}")


def memory_format_of(x):
    """The memory format the ops give their outputs for input ``x``: channels-last where x is
    (and not also contiguous: one channel, or 1x1 maps), else contiguous."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def like_memory_format(x, channels):
    """An uninitialised (N, channels, H, W) tensor in x's memory format (channels-last stays)."""
    n, _, h, w = x.shape
    return torch.empty((n, channels, h, w), dtype=x.dtype, device=x.device,
                       memory_format=memory_format_of(x))


def check_norm_groups(shape, norm: str, batch_stats: bool, what: str = "norm_act") -> None:
    """PyTorch's functional norms' refusal of statistics over one value (a variance of 0 that
    would normalize the group to 0): instance norm over a 1x1 map, batch norm with batch
    statistics over one value per channel. ``shape``: the normalized (N, C, H, W)."""
    n, _, h, w = shape
    if norm == "instance" and h * w <= 1:
        raise ValueError(f"{what}: Expected more than 1 spatial element when training, got "
                         f"input size {list(shape)} (instance norm over a 1x1 map)")
    if norm == "batch" and batch_stats and n * h * w <= 1:
        raise ValueError(f"{what}: Expected more than 1 value per channel when training, got "
                         f"input size {list(shape)}")
