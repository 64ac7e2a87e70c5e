"""Facts about this machine's CPUs, from the standard library only (option parsing asks them).

The model name: benchmark results name it (the same code measured 1.6x the reference on a Xeon
and 1.2x on an EPYC), and measured choices are kept per model (fastp2p.ops.remembered_forms).
The usable cores: the default packing workers, loader workers and reader threads, and the bound
on --num_threads and pack --workers, checked while the command line is parsed (so here, not in
fastp2p.data, which imports numpy and torch)."""
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The model name as ``lscpu`` prints it (Linux /proc/cpuinfo), else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the platform has one: what
    taskset, cpusets and container limits leave it), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
