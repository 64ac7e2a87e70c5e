"""The words for the limit that a fork or a thread is refused at (EAGAIN; Python's
RuntimeError "can't start new thread"), which every line saying one builds from: pack's
workers, the data loader's workers and threads, the checkpoint writer's thread, OpenBLAS's
threads. A utility module (standard library alone), so that the command line's own
(``fastp2p.import_threads``) may use it as the data and train layers do."""

# The limit a fork or a thread counts in
PROCESS_LIMIT = "the limit on processes and threads"
# Where it is set
PROCESS_LIMIT_NAMES = "ulimit -u, or a container's pids limit"
# Why a fork or a thread was refused, as pack's workers and train's checkpoint writer say it
PROCESS_LIMIT_REACHED = f"{PROCESS_LIMIT} reached: {PROCESS_LIMIT_NAMES}"
# What to raise where a fork or a thread was refused
RAISE_PROCESS_LIMIT = f"raise {PROCESS_LIMIT} ({PROCESS_LIMIT_NAMES})"
