"""Telling torch's out-of-memory failures from its other RuntimeErrors, so that a run that does
not fit ends in one line naming what to lower instead of a traceback."""
import torch


def is_out_of_memory(err: BaseException) -> bool:
    """True for a failed allocation: torch.OutOfMemoryError on CUDA; on the CPU, where the
    allocator raises a plain RuntimeError, told by its words."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def first_line(err: BaseException) -> str:
    """The error's first line (torch's CUDA message goes on for several), or its type's name."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
