"""Grid sizes shared by the kernels' host launchers: a CUDA device's multiprocessor count, read
once per device, and the split of a long reduction across programs (norm_act's statistics and
gradient sums, the fused conv's wgrad and bias gradient). No kernels here; CUDA is touched only
when a launcher sizes a grid for a CUDA device.
"""
import functools

import torch
import triton

# A reduction's programs per multiprocessor: enough resident programs to hide memory latency.
PROGRAMS_PER_SM = 4


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of the CUDA ``device`` (the current device where it has no
    index), cached per device index."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _multiprocessors(index)


def reduction_splits(rows: int, block_rows: int, programs_without_split: int,
                     device: torch.device, *, override, interpreted: bool):
    """(splits, rows_per_split) of a reduction over ``rows`` rows that already has
    ``programs_without_split`` programs (groups x channel blocks, taps x channel blocks): split
    until the launch has about ``override`` programs when that is set (the callers' test
    setting), 1 when ``interpreted`` (the interpreter runs programs one after another), else
    PROGRAMS_PER_SM per multiprocessor of ``device``. rows_per_split is a multiple of
    ``block_rows``, the rows one program step loads."""
    if override:
        target = override
    elif interpreted:
        target = 1
    else:
        target = PROGRAMS_PER_SM * sm_count(device)
    splits = max(1, min(triton.cdiv(rows, block_rows),
                        triton.cdiv(target, programs_without_split)))
    rows_per_split = triton.cdiv(triton.cdiv(rows, splits), block_rows) * block_rows
    return triton.cdiv(rows, rows_per_split), rows_per_split
