"""Normalization-layer factories, as the reference implementation builds them."""
import functools

import torch.nn as nn


def get_norm_layer(norm_type: str = "instance"):
    """Return the factory the reference implementation uses for ``--norm``.

    ``batch``: affine BatchNorm2d tracking running statistics; ``instance``: InstanceNorm2d with
    neither affine parameters nor running statistics; ``none``: an Identity (no parameters).
    """
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == "none":
        return _identity_norm
    raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm_type!r}")


def _identity_norm(num_features: int) -> nn.Module:
    return nn.Identity()


def uses_conv_bias(norm_layer) -> bool:
    """Convs carry a bias exactly when the norm that follows is an InstanceNorm.

    The rule (and its blind spot for a bare ``nn.InstanceNorm2d`` subclass) follows the
    reference implementation, so that parameter trees match key for key.
    """
    if isinstance(norm_layer, functools.partial):
        return norm_layer.func == nn.InstanceNorm2d
    return norm_layer == nn.InstanceNorm2d
