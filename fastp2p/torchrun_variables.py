"""What torchrun tells the processes it starts, read from its environment variables without
torch: ``fastp2p test`` and ``fastp2p bench`` refuse a torchrun job before torch loads
(seconds), so that its processes do not each go on to say another error first."""
import os


def launched_world_size() -> int:
    """How many processes torchrun started (its WORLD_SIZE; 1 without torchrun), known before
    the process group is joined."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launched_local_rank() -> int:
    """This process's GPU index on its node as torchrun numbers it (0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))
