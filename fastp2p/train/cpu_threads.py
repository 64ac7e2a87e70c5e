"""How many CPU threads compute and how many processes load data, from the usable cores.

PyTorch's default (one compute thread per core) plus the reference's 4 loader workers
oversubscribes a small machine: on a loaded 2-core machine the default run was 5-11x slower
than with OMP_NUM_THREADS=1 (README, Train, has the figures), mostly because OpenMP threads
that wait for a descheduled sibling burn their time slices. So fastp2p counts the cores this
process may use (``cpu_info.usable_cpus``: the affinity mask that taskset and cpusets set, at
most the control group's CPU quota, as docker --cpus sets it) and:

- on a CPU device, trains with no loader workers on up to 2 usable cores (decoding the small
  images costs far less than a step), else one worker plus one per 8 cores (at most 4), and
  gives torch one compute thread per remaining core, minus one when the machine is already
  busy (load average at least the usable cores) so the main thread keeps a core;
- on a CUDA device, keeps torch's thread count (the GPU computes) and gives loading one worker
  per remaining core, at most 4, the reference's default.

``--num_threads`` (loader workers, the reference's option) and OMP_NUM_THREADS /
MKL_NUM_THREADS (torch's compute threads) override the choice; the run prints it once.
``--num_threads`` is refused while parsing past ``cpu_info.most_loader_workers``: --num_threads 1000
started 1000 worker processes on a 2-core machine.

A packed dataset (``fastp2p pack``) is read by threads of the training process, not worker
processes (``PackedDeviceLoader``): the workers chosen above become that many reader threads,
at least one (the loader needs one; it reads ahead into a bounded queue, so on a CPU it waits
most of a step instead of competing with the compute threads), except that on CUDA without
--num_threads the loader keeps its own default (one per usable core, at most 8: the batches
are copied and augmented on the GPU, the readers only copy bytes).
"""
import functools
import os
from dataclasses import dataclass

from fastp2p import cpu_info

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class ThreadChoice:
    torch_threads: int      # what torch.get_num_threads() will be
    loader_workers: int     # DataLoader worker processes (0 for a packed dataset)
    summary: str            # the one line the run prints
    packed_readers: int = 0  # PackedDeviceLoader reader threads (a packed dataset only)


def local_processes(environ=None) -> int:
    """The processes of this job on this machine, which share its cores and memory: torchrun's
    LOCAL_WORLD_SIZE, 1 without torchrun (or with it empty). A value that is no count (set by
    hand: torchrun sets a whole number >= 1) is a ValueError naming it, not a division by
    zero or int()'s message."""
    environ = os.environ if environ is None else environ
    value = environ.get("LOCAL_WORLD_SIZE", "").strip()
    if not value:
        return 1
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise ValueError(f"LOCAL_WORLD_SIZE={value!r} is not a number of processes (torchrun "
                         "sets it to a whole number >= 1): unset it, or set the processes of "
                         "this job on this machine")
    return int(value)


def _is_thread_count(value: str) -> bool:
    """Whether OpenMP takes ``value`` of OMP_NUM_THREADS (or MKL_NUM_THREADS): a whole number
    >= 1, or a list of them for nested levels ("4,2"). It ignores any other value (`abc`, 0)
    and runs its default, which the run then chooses as if the variable were unset."""
    return all(part.strip().isascii() and part.strip().isdigit() and int(part) >= 1
               for part in value.split(","))


@functools.lru_cache(maxsize=None)
def _machine_busy(cores: int) -> bool:
    """Read once per process: every run in it gets the same choice (the same thread count gives
    the same float reduction order, which resume tests compare bit for bit)."""
    try:
        return os.getloadavg()[0] >= cores
    except OSError:
        return False


def choose_threads(device_type: str, num_threads_option, *, packed=False, cores=None,
                   busy=None, environ=None) -> ThreadChoice:
    """The choice for a run on ``device_type`` ("cpu" | "cuda"). ``num_threads_option``: the
    --num_threads given, or None; ``packed``: the data is read by PackedDeviceLoader's threads.
    ``cores``, ``busy`` and ``environ`` default to this machine's (tests pass their own); with
    this machine's cores, the line names the cgroup's CPU quota where one is set."""
    import torch

    environ = os.environ if environ is None else environ
    quota = None
    if cores is None:
        cores = max(1, cpu_info.usable_cpus() // local_processes(environ))
        quota = cpu_info.cpu_quota()
    if num_threads_option is not None:
        workers, workers_from = num_threads_option, "--num_threads"
    elif device_type == "cuda":
        workers, workers_from = min(cpu_info.MAX_WORKERS, max(0, cores - 1)), "auto"
    else:
        workers = 0 if cores <= 2 else min(cpu_info.MAX_WORKERS, cores // 8 + 1)
        workers_from = "auto"
    env_set = [name for name in THREAD_ENV_VARS if environ.get(name, "").strip()]
    honoured = [name for name in env_set if _is_thread_count(environ[name])]
    if honoured:
        threads, threads_from = torch.get_num_threads(), f"{honoured[0]}={environ[honoured[0]]}"
    elif device_type == "cuda":
        threads, threads_from = torch.get_num_threads(), "torch's default"
    else:
        if busy is None:
            busy = _machine_busy(cores)
        threads = max(1, cores - workers - (1 if busy else 0))
        threads_from = "auto, machine busy" if busy else "auto"
    threads_from += "".join(f"; {name}={environ[name]!r} is no thread count: ignored"
                            for name in env_set if name not in honoured)
    if not packed:
        loading, readers = f"{workers} loader worker(s) ({workers_from})", 0
    else:
        if device_type == "cuda" and num_threads_option is None:
            from fastp2p.data.packed_loader import default_readers
            readers, readers_from = default_readers(), "packed data on CUDA"
        else:
            readers = max(1, workers)
            readers_from = workers_from + (", at least one" if readers > workers else "")
        loading, workers = f"{readers} packed-data reader thread(s) ({readers_from})", 0
    quota_note = "" if quota is None else f" (CPU quota of this cgroup: {quota:g} CPUs)"
    summary = (f"threads: {cores} usable core(s){quota_note} -> torch {threads} compute "
               f"thread(s) ({threads_from}), {loading}; set OMP_NUM_THREADS or --num_threads "
               f"to change")
    return ThreadChoice(threads, workers, summary, readers)


def apply_thread_choice(choice: ThreadChoice) -> None:
    import torch

    if torch.get_num_threads() != choice.torch_threads:
        torch.set_num_threads(choice.torch_threads)
