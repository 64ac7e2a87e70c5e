"""Turn the user's norm choice (a string, or a factory as the reference passes it) into a
factory."""
import functools

import torch.nn as nn

from fastp2p.ops.definitions import NORMS
from fastp2p.reference.norm import get_norm_layer, uses_conv_bias


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
    network the factory builds is the one that name builds (a bare ``nn.BatchNorm2d`` is
    "batch"), else a readable form of the factory. The network includes the convolutions'
    biases, which the reference gives them only for ``nn.InstanceNorm2d`` or a partial of it
    (``uses_conv_bias``): an InstanceNorm2d built by a lambda or function comes without them,
    so it is not "instance", whose network has them. Never raises: the probe builds a
    one-channel norm, which a legitimate factory may refuse (``functools.partial(nn.GroupNorm,
    4)`` needs channels divisible by 4); such a factory is described by its readable form."""
    try:
        probe = norm_layer(1)
    except Exception:  # any refusal of the probe: the description must not fail (repr, errors)
        probe = None
    if type(probe) is nn.BatchNorm2d and probe.affine and probe.track_running_stats:
        return "batch"
    if (type(probe) is nn.InstanceNorm2d and not probe.affine and not probe.track_running_stats
            and uses_conv_bias(norm_layer)):
        return "instance"
    if type(probe) is nn.Identity:
        return "none"
    return _readable_factory(norm_layer)


def _readable_factory(norm_layer) -> str:
    """``GroupNorm(4, affine=False)`` for ``functools.partial(nn.GroupNorm, 4, affine=False)``
    (nested partials are flattened by functools); a name or repr for any other callable."""
    if isinstance(norm_layer, functools.partial):
        args = [repr(a) for a in norm_layer.args]
        args += [f"{k}={v!r}" for k, v in norm_layer.keywords.items()]
        return f"{_name(norm_layer.func)}({', '.join(args)})"
    return _name(norm_layer)


def _name(factory) -> str:
    return getattr(factory, "__name__", repr(factory))


# Norm factories other than the named three whose networks a checkpoint's keys tell apart, by
# their description. Not here: a BatchNorm without running statistics, whose keys a GroupNorm's
# or a LayerNorm's match.
KEY_READABLE_FACTORIES = {describe_norm_layer(factory): factory for factory in (
    functools.partial(nn.BatchNorm2d, affine=False),
    functools.partial(nn.InstanceNorm2d, affine=True),
    functools.partial(nn.InstanceNorm2d, track_running_stats=True),
    functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=True))}


def _saved_settings(factory) -> tuple:
    """What a checkpoint of a network built with ``factory`` tells of its norm: whether a norm
    layer saves affine weights and running statistics, and whether the convolution before it
    has a bias (as the reference decides it)."""
    entries = factory(1).state_dict()
    return "weight" in entries, "running_mean" in entries, uses_conv_bias(factory)


_NORM_BY_SAVED_SETTINGS = {
    _saved_settings(factory): name
    for name, factory in [*((name, get_norm_layer(name)) for name in NORMS),
                          *KEY_READABLE_FACTORIES.items()]}


def norm_of_saved_settings(affine: bool, tracked: bool, conv_bias: bool):
    """The norm (a name of NORMS or of KEY_READABLE_FACTORIES) whose network saves affine
    weights or none, running statistics or none at a norm layer, with or without a bias on the
    convolution before it; None if no such norm does."""
    return _NORM_BY_SAVED_SETTINGS.get((affine, tracked, conv_bias))
