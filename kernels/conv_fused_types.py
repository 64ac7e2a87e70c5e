"""The fused convolution's argument types (kernels/conv_fused.py), without importing triton:
the backend contract (fastp2p/ops/backends/contract.py) and the ops name them too."""
from typing import NamedTuple, Optional

import torch


class InputTransform(NamedTuple):
    """What a convolution's prologue applies to one source: a = dropout(act(x * scale + shift)).

    scale/shift: None (identity), (N, C) per image and channel (instance norm) or (C,) per
    channel (batch norm), float32. seed/offset: ints or int64 device scalars (CUDA-graph replay
    reads their current values) of the counter RNG of ``fastp2p.ops.dropout_rng``."""
    scale: Optional[torch.Tensor] = None
    shift: Optional[torch.Tensor] = None
    activation: str = "none"
    dropout_p: float = 0.0
    seed: object = 0
    offset: object = 0


IDENTITY = InputTransform()


class GradFold(NamedTuple):
    """The part of a conv output's gradient that arrives through its norm statistics, added
    while dgrad / wgrad load the gradient: g + alpha * y + beta, with y the (pre-norm) output
    and alpha, beta float32 (N, C) (instance norm) or (C,) (batch norm)."""
    y: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor


class TilePartials(NamedTuple):
    """Per-tile, per-channel float32 partials of one launch: (N, T, C) a and b, (N, T) counts.
    Forward: (mean, M2, rows); dgrad: (sum g, sum g * x, rows)."""
    a: torch.Tensor
    b: torch.Tensor
    count: torch.Tensor
