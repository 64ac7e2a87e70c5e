"""The fused convolution's argument types (kernels/conv_fused.py), without importing triton:
the backend contract (fastp2p/ops/backends/contract.py) and the ops name them too."""
from typing import NamedTuple, Optional

import torch


class InputTransform(NamedTuple):
    """What a convolution's prologue applies to one source: a = dropout(act(x * scale + shift)).

    scale/shift: None (identity), (N, C) per image and channel (instance norm) or (C,) per
    channel (batch norm), float32, any strides (the launchers read a view through a dense
    copy). seed/offset: ints or int64 device scalars (CUDA-graph replay reads their current
    values) of the counter RNG of ``fastp2p.ops.dropout_rng``."""
    scale: Optional[torch.Tensor] = None
    shift: Optional[torch.Tensor] = None
    activation: str = "none"
    dropout_p: float = 0.0
    seed: object = 0
    offset: object = 0


IDENTITY = InputTransform()

# What the epilogue may apply to the output (after the bias): a network's output activation.
OUTPUT_ACTIVATIONS = ("none", "tanh")


class GradFold(NamedTuple):
    """What completes a conv output's gradient g while dgrad / wgrad load it, from the stored
    output y, so the completed gradient is never written. Either the part that arrives through
    y's norm statistics, g + alpha * y + beta, with y the pre-norm output and alpha, beta
    float32 (N, C) (instance norm) or (C,) (batch norm); or, with ``tanh``, the derivative of
    the epilogue's output tanh, g * (1 - y^2), with y the tanh's output (alpha, beta None)."""
    y: torch.Tensor
    alpha: Optional[torch.Tensor] = None
    beta: Optional[torch.Tensor] = None
    tanh: bool = False

    @property
    def code(self) -> int:
        """The kernels' FOLD constexpr: 1 statistics, 2 tanh (0: no fold, ``fold_code``)."""
        if self.tanh == (self.alpha is not None):
            raise ValueError("GradFold: give alpha and beta (the statistics' share) or tanh=True "
                             "(an output tanh's derivative), exactly one of them")
        return FOLD_TANH if self.tanh else FOLD_STATISTICS


FOLD_NONE, FOLD_STATISTICS, FOLD_TANH = 0, 1, 2


def fold_code(fold: Optional[GradFold]) -> int:
    return FOLD_NONE if fold is None else fold.code


class TilePartials(NamedTuple):
    """Per-tile, per-channel float32 partials of one launch: (N, T, C) a and b, (N, T) counts.
    Forward: (mean, M2, rows); dgrad: (sum g, sum g * x, rows)."""
    a: torch.Tensor
    b: torch.Tensor
    count: torch.Tensor
