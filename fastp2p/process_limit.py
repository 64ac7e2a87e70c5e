"""The words for the limit that a fork or a thread is refused at (EAGAIN; Python's
RuntimeError "can't start new thread"), which every line saying one builds from: pack's
workers, the data loader's workers and threads, the checkpoint writer's thread, OpenBLAS's
threads. Each names this process's memory limit too where one is set (`ulimit -v`, or
`ulimit -d`, which counts a thread's stack too: whichever ``import_memory.memory_limit_set``
finds set): a thread whose stack cannot be mapped under it is refused with the same EAGAIN, and
was blamed on the limit on processes and threads alone. A utility module, so that the command
line's own (``fastp2p.import_threads``) may use it as the data and train layers do."""
from fastp2p.import_memory import memory_limit_set

# The limit a fork or a thread counts in
PROCESS_LIMIT = "the limit on processes and threads"
# Where it is set
PROCESS_LIMIT_NAMES = "ulimit -u, or a container's pids limit"


def process_limit_reached() -> str:
    """Why a fork or a thread was refused, as pack's workers and train's checkpoint writer say
    it: "the limit on processes and threads reached: ulimit -u, or a container's pids limit",
    and "; or this process's memory limit (`ulimit -v`, now N KiB), too low for a thread's
    stack" where one is set (`ulimit -d` where that is the one)."""
    memory = memory_limit_set()
    return f"{PROCESS_LIMIT} reached: {PROCESS_LIMIT_NAMES}" + (
        f"; or {memory}, too low for a thread's stack" if memory else "")


def raise_process_limit_advice() -> str:
    """What to raise where a fork or a thread was refused: "raise the limit on processes and
    threads (ulimit -u, or a container's pids limit)", and ", or this process's memory limit
    (`ulimit -v`, now N KiB)" where one is set (`ulimit -d` where that is the one)."""
    memory = memory_limit_set()
    return f"raise {PROCESS_LIMIT} ({PROCESS_LIMIT_NAMES})" + (f", or {memory}" if memory else "")
