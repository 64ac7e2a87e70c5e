"""float32 -> bfloat16 rounding written out in bits, for the kernels that store bfloat16 (Adam's
bf16 model copy, the input pipeline's bf16 batches): the Triton 3.9 interpreter truncates a
float32 -> bfloat16 cast where a GPU and torch round to nearest even (checked 2026-11), so the
interpreted kernels would differ from the compiled ones. In a memory-bound kernel this costs as
little as the cast.
"""
import triton
import triton.language as tl


@triton.jit
def _round_to_bfloat16(x):
    """float32 -> bfloat16, round to nearest even (NaN -> the quiet NaN 0x7FC0): what
    ``tensor.to(torch.bfloat16)`` gives, bit for bit on numbers, interpreted or compiled."""
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    top = tl.where(x != x, 0x7FC0, rounded)
    return top.to(tl.uint16).to(tl.bfloat16, bitcast=True)
