"""Which statistics an ``nn.BatchNorm2d`` normalizes with, and whether its forward updates its
running statistics, decided as torch's ``_BatchNorm.forward`` decides (torch 2.x): a training
BatchNorm normalizes with the batch's statistics; an eval one with its running statistics
whenever it has the buffers, whatever ``track_running_stats`` says now (the flag set to False
after construction leaves the buffers in place); the running statistics (and the batch count)
are updated only in training with ``track_running_stats`` and the buffers present.

Tensors are read from the module's ``_buffers`` dict: nn.Module's __getattr__ costs about a
microsecond per lookup, and these run per layer per forward.
"""
import torch.nn as nn

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def has_running_stats(norm: nn.BatchNorm2d) -> bool:
    return norm._buffers.get("running_mean") is not None


def uses_running_stats(norm: nn.BatchNorm2d) -> bool:
    """Whether ``norm`` normalizes with its running statistics (torch: not ``bn_training``)."""
    return not norm.training and has_running_stats(norm)


def updates_running_stats(norm: nn.BatchNorm2d) -> bool:
    """Whether ``norm``'s forward updates its running statistics and counts the batch."""
    return norm.training and norm.track_running_stats and has_running_stats(norm)


def fused_ops_reproduce(norm: nn.BatchNorm2d) -> bool:
    """Whether fastp2p's norm ops reproduce ``norm``'s forward: its three buffers all present
    or all absent (as construction leaves them; torch's own forward raises, or counts batches
    without statistics, otherwise), and no cumulative moving average (``momentum=None`` in a
    forward that updates: its factor 1 / num_batches_tracked would cost a host sync)."""
    present = [norm._buffers.get(name) is not None for name in _BUFFERS]
    if any(present) and not all(present):
        return False
    return not (norm.momentum is None and norm.training and norm.track_running_stats)
