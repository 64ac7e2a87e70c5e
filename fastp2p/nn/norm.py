"""Turn the user's norm choice (a string, or a factory as the reference passes it) into a factory."""
import functools

import torch.nn as nn

from fastp2p.ops.definitions import NORMS
from fastp2p.reference.norm import get_norm_layer


def resolve_norm_layer(norm, norm_layer):
    """Return the norm factory for the module constructors.

    ``norm`` is fastp2p's string form ("batch" | "instance" | "none"); ``norm_layer`` is the
    reference implementation's form (``nn.BatchNorm2d``, ``functools.partial(nn.InstanceNorm2d,
    ...)`` or any callable returning a module). Give at most one; with neither, BatchNorm2d, the
    reference constructors' default.
    """
    if norm is not None and norm_layer is not None:
        raise ValueError("give either norm= (a string) or norm_layer= (a factory), not both")
    if norm is not None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        return get_norm_layer(norm)
    if norm_layer is None:
        return nn.BatchNorm2d
    if isinstance(norm_layer, str):
        raise ValueError(f"norm_layer takes a factory such as nn.BatchNorm2d; for the name "
                         f"{norm_layer!r} use norm={norm_layer!r}")
    if not callable(norm_layer):
        raise ValueError(f"norm_layer must be callable (e.g. nn.BatchNorm2d), got {norm_layer!r}")
    return norm_layer


def describe_norm_layer(norm_layer) -> str:
    """The norm's name for configs, repr and messages: "batch" | "instance" | "none" where the
    factory builds exactly what that name builds (a bare ``nn.BatchNorm2d`` is "batch"), else a
    readable form of the factory."""
    probe = norm_layer(1)
    if type(probe) is nn.BatchNorm2d and probe.affine and probe.track_running_stats:
        return "batch"
    if type(probe) is nn.InstanceNorm2d and not probe.affine and not probe.track_running_stats:
        return "instance"
    if type(probe) is nn.Identity:
        return "none"
    if isinstance(norm_layer, functools.partial):
        args = ", ".join(f"{k}={v}" for k, v in norm_layer.keywords.items())
        return f"{norm_layer.func.__name__}({args})"
    return getattr(norm_layer, "__name__", repr(norm_layer))
