"""Telling torch's out-of-memory failures from its other RuntimeErrors, so that a run that does
not fit ends in one line naming what to lower instead of a traceback."""
import torch


# The words of the CPU's plain RuntimeErrors for a failed allocation: torch's allocator's, and
# oneDNN's when it cannot allocate a convolution's primitive (its scratch memory and JIT code;
# under `ulimit -v` about one run in two fails there, the others in torch's allocator).
CPU_OUT_OF_MEMORY_WORDS = ("can't allocate memory", "could not create a primitive")


def is_out_of_memory(err: BaseException) -> bool:
    """True for a failed allocation: torch.OutOfMemoryError on CUDA; on the CPU, where the
    allocator and oneDNN raise a plain RuntimeError, told by its words."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError)
        and any(words in str(err) for words in CPU_OUT_OF_MEMORY_WORDS))


def first_line(err: BaseException) -> str:
    """The error's first line (torch's CUDA message goes on for several), or its type's name."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
