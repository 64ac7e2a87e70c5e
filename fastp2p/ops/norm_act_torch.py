"""norm_act in PyTorch's own ops, differentiated by autograd: what a CPU float32 call that
records autograd (training) runs unless FASTP2P_BACKEND forces a backend.

On the one CPU measured (a 2-core AMD EPYC), PyTorch's vectorized batch / instance norm,
activation and cat trained as fast as the C++ kernels behind the autograd Function in NCHW and
faster in channels-last, where the kernels are slowest (benchmarks/NOTES.md, "CPU training:
PyTorch's own norm ops"): the kernels recompute the activation and dropout in a backward whose
passes over small maps cost more than torch's, and each call pays the Function's host cost.
The result is the op's contract all the same: the reference modules' norms, the same
counter-based dropout masks (``dropout_keep_mask``), ``relu(skip)`` concatenated first, x's
memory format, BatchNorm's running statistics and ``num_batches_tracked`` updated. As with
nn.BatchNorm2d, F.batch_norm leaves the running statistics' version counters as they were (its
backward reads them: a bump would fail it); the counted batch bumps ``num_batches_tracked``'s,
which the eval folds watch too (fastp2p.nn.folding).
"""
import torch
import torch.nn.functional as F

from fastp2p.ops.definitions import count_batch, memory_format_of
from fastp2p.ops.norm_act_reference import norm_act_math


def trains_with_torch_ops(x: torch.Tensor, vectors, backend_forced: bool) -> bool:
    """Whether a call recording autograd on ``x`` runs here: CPU float32 with float32
    per-channel ``vectors`` (weight, bias, running statistics: None for absent ones; torch's
    CPU norms refuse mixed dtypes, which the kernels' launchers convert), and no backend forced
    (``FASTP2P_BACKEND=cpp`` keeps the kernels, as the tests of them do)."""
    return (x.is_cpu and x.dtype == torch.float32 and not backend_forced
            and all(v is None or v.dtype == torch.float32 for v in vectors))


def norm_act_torch(x, weight, bias, running_mean, running_var, num_batches_tracked, skip, seed,
                   offset, cfg):
    """``cat([relu(skip), dropout(act(norm(x) * weight + bias))], 1)`` (no cat without skip);
    ``seed``/``offset``: ints. Arguments as checked by norm_act's boundary. The norm, activation
    and dropout are the reference's (``norm_act_math``); this adds the batch count, the skip
    and x's memory format."""
    y = norm_act_math(x, weight, bias, running_mean, running_var, seed=seed, offset=offset,
                      **cfg.launcher_kwargs())
    count_batch(num_batches_tracked, cfg.norm, cfg.training, running_mean)
    if y is x:           # no norm, affine, activation or dropout
        y = x.clone()    # a new tensor, as every other path returns
    out = y if skip is None else torch.cat([F.relu(skip), y], 1)
    # x's memory format, as the kernels write it: the mask, a skip of another layout or a
    # strided x can leave torch's result in another
    return out.contiguous(memory_format=memory_format_of(x))
