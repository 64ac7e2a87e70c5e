"""Facts about this machine's CPUs, from the standard library only (option parsing asks them).

The model name: benchmark results name it (the same code measured 1.6x the reference on a Xeon
and 1.2x on an EPYC), and measured choices are kept per model (fastp2p.ops.remembered_forms).
The usable cores (the affinity mask, at most the cgroup's CPU quota): the default packing
workers, loader workers and reader threads, and the bound on --num_threads and pack --workers,
checked while the command line is parsed (so here, not in fastp2p.data, which imports numpy and
torch, nor in fastp2p.train, which the option parsing of fastp2p.data must not import)."""
import math
import os
import platform
from pathlib import Path

from fastp2p import cgroups


def cpu_model() -> str:
    """The model name as ``lscpu`` prints it (Linux /proc/cpuinfo) with the family and model
    numbers where it gives them, else platform's. A virtual machine's model name can be as bare
    as "AMD EPYC", shared by generations that differ in what runs fast (family 23 model 1 has
    AVX2, family 25 model 17 AVX-512: benchmarks/NOTES.md, "Stop 46")."""
    try:
        model = model_from_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model = None
    return model or platform.processor() or platform.machine()


def model_from_cpuinfo(text: str) -> "str | None":
    """"NAME (family F, model M)" from /proc/cpuinfo's first processor (NAME alone where the
    numbers are missing), None without a model name."""
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    if fields.get("cpu family") and fields.get("model"):
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def usable_cpus() -> int:
    """CPUs this process may use: those its affinity mask lets it run on (taskset, cpusets),
    else all of them, and no more than its control group's CPU quota (``cpu_quota``: docker
    --cpus, Kubernetes' limits.cpu, which leave the mask as it is) rounded up to whole CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return cpus if quota is None else min(cpus, max(1, math.ceil(quota)))


def cpu_quota(proc_cgroup=None, mount=None) -> "float | None":
    """The CPUs (quota / period) of the smallest CPU quota of this process's control group and
    the groups above it: cgroup v2's ``cpu.max`` ("QUOTA PERIOD"), v1's ``cpu.cfs_quota_us``
    / ``cpu.cfs_period_us``. None where none is set ("max", v1's -1) or readable."""
    quotas = [_group_quota(folder, is_v2)
              for folder, is_v2 in cgroups.group_folders("cpu", proc_cgroup, mount)]
    return min((quota for quota in quotas if quota is not None), default=None)


def _group_quota(folder: Path, is_v2: bool) -> "float | None":
    """The CPUs one group's quota gives, or None."""
    if is_v2:
        quota, _, period = (cgroups.read_text(folder / "cpu.max") or "").partition(" ")
    else:
        quota = cgroups.read_text(folder / "cpu.cfs_quota_us") or ""
        period = cgroups.read_text(folder / "cpu.cfs_period_us") or ""
    if not all(text.isascii() and text.isdigit() and int(text) > 0 for text in (quota, period)):
        return None
    return int(quota) / int(period)


MAX_WORKERS = 4  # the reference's --num_threads default


def most_loader_workers(cores: int) -> int:
    """The largest --num_threads taken on ``cores`` usable cores: one worker per core, or the
    reference's default on a smaller machine (its commands pass --num_threads 4, and a few
    workers more than cores wait on files as much as they compute). Beyond that, workers only
    take turns on the cores."""
    return max(MAX_WORKERS, cores)
