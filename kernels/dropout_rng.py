"""The counter-based dropout hash, on the host: the one Python copy of the function the kernels
(``norm_act_tiles._mix32`` in Triton, ``csrc/common/dropout_rng.h`` in C++/CUDA) compute per
element, and the threshold that turns its 32 random bits into a keep decision.

Element ``i`` of a logical NCHW tensor is kept when ``mix32((mix32(seed) + offset + i) mod 2^32)
>= dropout_threshold(p)``. ``fastp2p.ops.dropout_rng.dropout_keep_mask`` builds the whole mask
from these; tests/norm_act/test_dropout_rng.py checks every kernel copy against it.
"""
LOW32 = 0xFFFFFFFF


def mix32(h):
    """A 32-bit integer finaliser (xorshift-multiply, two rounds): well-spread output bits.

    ``h``: a Python int or an int64 tensor holding values below 2^32 (the same operators work
    on both; the products are masked back to 32 bits after every multiply).
    """
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & LOW32
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & LOW32
    return h ^ (h >> 16)


def dropout_threshold(p: float) -> int:
    """Bits below this value are dropped: probability p."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    return int(p * 2 ** 32)
