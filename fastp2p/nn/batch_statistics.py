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

def uses_running_stats(norm: nn.BatchNorm2d) -> bool:
    """Whether ``norm`` normalizes with its running statistics (torch: not ``bn_training``;
    with one buffer set to None, torch's forward raises and so do fastp2p's ops, handed the
    other alone)."""
    get = norm._buffers.get
    return not norm.training and (get("running_mean") is not None
                                  or get("running_var") is not None)


def updates_running_stats(norm: nn.BatchNorm2d) -> bool:
    """Whether ``norm``'s forward updates its running statistics and counts the batch."""
    return (norm.training and norm.track_running_stats
            and norm._buffers.get("running_mean") is not None)


def fused_ops_reproduce(norm: nn.BatchNorm2d) -> bool:
    """Whether fastp2p's norm ops reproduce ``norm``'s forward; asked per layer per call, so
    the common case first: a forward that does not update the running statistics, yes. One
    that does (training with track_running_stats): with its three buffers all present or all
    absent (torch raises, or counts batches without statistics, otherwise), and no cumulative
    moving average (``momentum=None``: its factor 1 / num_batches_tracked would cost a host
    sync)."""
    if not (norm.training and norm.track_running_stats):
        return True
    get = norm._buffers.get
    absent = get("running_mean") is None
    return (norm.momentum is not None and absent == (get("running_var") is None)
            and absent == (get("num_batches_tracked") is None))
