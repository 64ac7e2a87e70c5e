"""What torchrun tells the processes it starts, read from its environment variables without
torch: ``fastp2p test`` and ``fastp2p bench`` refuse a torchrun job before torch loads
(seconds), so that its processes do not each go on to say another error first, and
``command_errors`` asks which process of a node says a refusal. At the bottom of the layers
beside ``command_errors``, which imports it: standard library only."""
import os


def launched_world_size() -> int:
    """How many processes torchrun started (its WORLD_SIZE; 1 without torchrun), known before
    the process group is joined."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launched_local_rank() -> int:
    """This process's GPU index on its node as torchrun numbers it (its LOCAL_RANK; 0 without
    torchrun). An empty LOCAL_RANK, which torchrun never sets, counts as 0, as an empty
    WORLD_SIZE counts as 1: the process then says its node's refusals rather than none."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)
