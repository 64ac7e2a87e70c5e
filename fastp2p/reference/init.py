"""Weight initialisation, as the reference implementation's ``init_weights``."""
import math
import numbers

import torch.nn as nn
from torch.nn import init

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Re-initialise every conv/linear weight (biases to 0) and BatchNorm2d weight ~ N(1, gain).

    Modules are visited in ``net.apply`` order, so the same seed gives the reference's values.
    TypeError for a ``net`` that is no module or an ``init_gain`` that is no number, ValueError
    for an unknown ``init_type`` or an ``init_gain`` that is not finite and >= 0 (as the CLI's
    --init_gain), before any weight is touched.
    """
    _check_arguments(net, init_type, init_gain)

    # In place on the parameters themselves (torch.nn.init works under no_grad), not through
    # ``.data`` as the reference does: the same values, and the version counters move, so the
    # weights that fastp2p's modules cache for inference (folded, packed) follow.
    def init_module(m):
        classname = m.__class__.__name__
        if getattr(m, "weight", None) is not None and ("Conv" in classname
                                                       or "Linear" in classname):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=init_gain)
            if getattr(m, "bias", None) is not None:
                init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in classname and m.weight is not None:  # affine=False has none
            init.normal_(m.weight, 1.0, init_gain)
            init.constant_(m.bias, 0.0)

    net.apply(init_module)
    return net


def _check_arguments(net, init_type, init_gain) -> None:
    """Raised here rather than by torch.nn.init: that fails at the first layer, after the
    layers before it were overwritten (a NaN gain), or not at all (an infinite gain leaves
    non-finite weights), with a message that names neither argument."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if init_type not in INIT_TYPES:
        raise ValueError(f"init_type must be one of {INIT_TYPES}, got {init_type!r}")
    if not isinstance(init_gain, numbers.Real) or isinstance(init_gain, bool):
        raise TypeError(f"init_gain must be a number, got {type(init_gain).__name__}")
    if not (math.isfinite(init_gain) and init_gain >= 0):
        raise ValueError(f"init_gain must be a finite number >= 0, got {init_gain!r}")
