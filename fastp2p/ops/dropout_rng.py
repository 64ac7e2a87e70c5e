"""The counter-based dropout mask that every backend reproduces bit for bit.

No mask is stored: the backward pass (and a CUDA-graph replay with a new offset) regenerates it
from (seed, offset, element index). Element ``i`` is the logical NCHW flat index of the tensor
being dropped, so the mask does not depend on memory layout. Arithmetic is on the low 32 bits
(int64 tensors here, masked after every multiply and add; the kernels use uint32).
"""
import torch

_LOW32 = 0xFFFFFFFF


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xorshift-multiply, two rounds): well-spread output bits."""
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _LOW32
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _LOW32
    return h ^ (h >> 16)


def dropout_threshold(p: float) -> int:
    """Bits below this value are dropped: probability p."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    return int(p * 2 ** 32)


def dropout_keep_mask(shape, p: float, seed: int, offset: int, device=None) -> torch.Tensor:
    """Boolean keep-mask of a logical NCHW ``shape`` (True = kept)."""
    numel = 1
    for size in shape:
        numel *= size
    index = torch.arange(numel, dtype=torch.int64, device=device)
    start = _mix32(torch.tensor(seed & _LOW32, dtype=torch.int64, device=device))
    bits = _mix32((start + offset + index) & _LOW32)
    return (bits >= dropout_threshold(p)).reshape(shape)
