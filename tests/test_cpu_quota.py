"""The usable cores follow the control group's CPU quota (docker --cpus, Kubernetes' limits.cpu)
as well as the affinity mask: a quota leaves the mask as it is, so a container capped at 1 CPU
on a 64-core host chose 60 compute threads and 4 loader workers, and pack 64 workers. The
cgroup tree is a fake in tmp_path, which cgroups.PROC_CGROUP and cgroups.MOUNT point at."""
import random

import pytest

from fastp2p import cgroups, cpu_info
from fastp2p.cli import build_parser
from fastp2p.train.cpu_threads import choose_threads

HOST_CORES = 64


@pytest.fixture
def fake_cgroup(tmp_path, monkeypatch):
    """write(proc, {relative path: text}): this process's /proc/self/cgroup and the files of
    its cgroup mount, on a host whose affinity mask has HOST_CORES cores."""
    mount = tmp_path / "fs"
    monkeypatch.setattr(cgroups, "PROC_CGROUP", str(tmp_path / "cgroup"))
    monkeypatch.setattr(cgroups, "MOUNT", str(mount))
    monkeypatch.setattr(cpu_info.os, "sched_getaffinity", lambda pid: set(range(HOST_CORES)))

    def write(proc, files):
        (tmp_path / "cgroup").write_text(proc)
        for relative, text in files.items():
            (mount / relative).parent.mkdir(parents=True, exist_ok=True)
            (mount / relative).write_text(text + "\n")
    return write


@pytest.mark.parametrize("proc, files, quota", [
    ("0::/\n", {"cpu.max": "150000 100000"}, 1.5),                  # docker --cpus 1.5, v2
    ("0::/\n", {"cpu.max": "max 100000"}, None),                    # v2's "no quota"
    ("2:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "50000",         # v1
                           "cpu/cpu.cfs_period_us": "100000"}, 0.5),
    ("2:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1",            # v1's "no quota"
                           "cpu/cpu.cfs_period_us": "100000"}, None),
    # a job runner's group: the smallest quota of the group and its parents
    ("0::/slice/job\n", {"slice/job/cpu.max": "max 100000", "slice/cpu.max": "300000 100000",
                         "cpu.max": "800000 100000"}, 3.0),
    # a parent's quota below the group's own is the one that holds
    ("0::/slice/job\n", {"slice/job/cpu.max": "400000 100000",
                         "slice/cpu.max": "200000 100000"}, 2.0),
    ("0::/job:1\n", {"job:1/cpu.max": "200000 100000"}, 2.0),     # a ':' in the group's path
    ("0::/\n", {"cpu.max": "a lot"}, None),                         # unreadable: no quota
    ("0::/\n", {"cpu.max": "100000 0"}, None),                      # a zero period
    ("0::/\n", {"cpu.max": "\u0661\u0665\u0660\u0660\u0660\u0660 100000"}, None),  # not ASCII
    ("2:cpu,cpuacct:/\n", {"cpu/cpu.cfs_period_us": "100000"}, None),  # v1, no quota file
    ("0::/\n", {}, None),                                           # no file
    ("7:pids:/x\n", {"cpu.max": "100000 100000"}, None),            # no cpu group named
    # cpuset's line names no cpu group, though "cpu" starts its name
    ("5:cpuset:/other\n2:cpu,cpuacct:/\n", {"cpu/other/cpu.cfs_quota_us": "50000",
                                            "cpu/other/cpu.cfs_period_us": "100000"}, None),
], ids=["v2", "v2-max", "v1", "v1-unlimited", "parent", "parent-smaller", "colon-in-path",
        "garbage", "zero-period", "non-ascii-digits", "v1-no-quota-file", "none",
        "other-controller", "cpuset"])
def test_the_quota_is_the_smallest_of_the_group_and_its_parents(fake_cgroup, proc, files,
                                                                  quota):
    fake_cgroup(proc, files)
    assert cpu_info.cpu_quota() == quota


def test_unreadable_cgroup_files_are_no_quota(tmp_path):
    """A /proc/self/cgroup that cannot be read (here a folder) names no group, and a cpu.max
    that is not text sets no quota: neither stops option parsing."""
    mount = tmp_path / "fs"
    mount.mkdir()
    (mount / "cpu.max").write_bytes(b"\xff\xfe 100000\n")
    assert cpu_info.cpu_quota(tmp_path, mount) is None
    (tmp_path / "cgroup").write_text("0::/\n")
    assert cpu_info.cpu_quota(tmp_path / "cgroup", mount) is None
    (mount / "cpu.max").write_text("300000 100000\n")
    assert cpu_info.cpu_quota(tmp_path / "cgroup", mount) == 3.0


@pytest.mark.parametrize("quota, usable", [
    ("150000 100000", 2),     # rounded up to whole CPUs
    ("5000 100000", 1),       # at least one
    ("max 100000", HOST_CORES),
    (f"{(HOST_CORES + 8) * 100000} 100000", HOST_CORES),  # the mask is the smaller
])
def test_the_usable_cpus_are_the_mask_at_most_the_quota(fake_cgroup, quota, usable):
    fake_cgroup("0::/\n", {"cpu.max": quota})
    assert cpu_info.usable_cpus() == usable


def test_the_automatic_choice_and_its_line_follow_the_quota(fake_cgroup):
    """Up to 2 cores a CPU run loads in the main process and gives torch every core."""
    cpus = random.randrange(1, 3)
    fake_cgroup("0::/\n", {"cpu.max": f"{cpus * 100000} 100000"})
    choice = choose_threads("cpu", None, busy=False, environ={})
    assert (choice.torch_threads, choice.loader_workers) == (cpus, 0)
    assert choice.summary.startswith(f"threads: {cpus} usable core(s) (CPU quota of this "
                                     f"cgroup: {cpus} CPUs) -> torch {cpus} compute"), \
        choice.summary


def test_the_worker_bounds_follow_the_quota(fake_cgroup, capsys):
    """Past the quota, pack --workers is refused as past the mask is (one worker per core, or
    4 on fewer)."""
    fake_cgroup("0::/\n", {"cpu.max": "600000 100000"})
    parser = build_parser()
    assert parser.parse_known_args(["pack", "in", "out", "--workers", "6"])[0].workers == 6
    with pytest.raises(SystemExit) as stop:
        parser.parse_known_args(["pack", "in", "out", "--workers", "7"])
    assert stop.value.code == 2
    assert "must be <= 6, got 7: this process may run on 6 core(s)" in capsys.readouterr().err
