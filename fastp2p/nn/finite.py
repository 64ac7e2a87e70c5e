"""Finding NaN or Inf in tensors: weights and buffers a checkpoint loads, and (through
fastp2p.train.finite) the training state before it is saved.

All tensors are reduced on their device (``torch._foreach_norm`` with ord=inf, fused on CUDA:
NaN or Inf anywhere in a tensor makes its max-abs non-finite, and a max never overflows) and
only one small vector, a flag per tensor, comes back to the host: one sync per check.
"""
import torch


def first_nonfinite(named_tensors) -> str | None:
    """The name of the first floating tensor of ``(name, tensor)`` pairs holding NaN or Inf."""
    named = [(name, t.detach()) for name, t in named_tensors
             if t.is_floating_point() and t.numel() > 0]
    if not named:
        return None
    names = [name for name, _ in named]
    by_device = {}
    for position, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(position)
    finite = [True] * len(named)
    for positions in by_device.values():
        maxima = torch._foreach_norm([named[p][1] for p in positions], float("inf"))
        # each maximum checked in its own dtype: cast to float32 first, a finite float64 value
        # past 3.4e38 was taken for Inf
        flags = torch.stack([torch.isfinite(m) for m in maxima]).tolist()
        for position, flag in zip(positions, flags):
            finite[position] = flag
    return next((name for name, flag in zip(names, finite) if not flag), None)
