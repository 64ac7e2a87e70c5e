"""The counter-based dropout mask that every backend reproduces bit for bit.

No mask is stored: the backward pass (and a CUDA-graph replay with a new offset) regenerates it
from (seed, offset, element index). Element ``i`` is the logical NCHW flat index of the tensor
being dropped, so the mask does not depend on memory layout. The hash and the threshold are
``fastp2p.kernels.dropout_rng``'s (the one Python copy); here they run on int64 tensors holding
32-bit values.
"""
import torch

from fastp2p.kernels.dropout_rng import LOW32, dropout_threshold, mix32

__all__ = ["dropout_keep_mask", "dropout_threshold"]


def dropout_keep_mask(shape, p: float, seed: int, offset: int, device=None) -> torch.Tensor:
    """Boolean keep-mask of a logical NCHW ``shape`` (True = kept)."""
    numel = 1
    for size in shape:
        numel *= size
    index = torch.arange(numel, dtype=torch.int64, device=device)
    start = mix32(torch.tensor(seed & LOW32, dtype=torch.int64, device=device))
    bits = mix32((start + offset + index) & LOW32)
    return (bits >= dropout_threshold(p)).reshape(shape)
