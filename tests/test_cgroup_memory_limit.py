"""The --ngf/--ndf memory check on the CPU holds the networks against the lower of the physical
memory and the memory limit of the process's cgroup (a container's): against the physical
memory alone, a run the container could never hold passed the check and was killed by the
kernel's out-of-memory killer instead. The cgroup files are fakes written in tmp_path."""
import os

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train import networks
from helpers.train_helpers import train_argv, write_aligned_dataset

CPU = torch.device("cpu")
CGROUP = "the memory limit of this process's cgroup"
PHYSICAL = (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "this machine's physical memory")


def _files(tmp_path, **texts):
    """Fake cgroup files: v2="..." for memory.max, v1="..." for memory.limit_in_bytes."""
    names = {"v2": "memory.max", "v1": "memory.limit_in_bytes"}
    paths = []
    for version, text in texts.items():
        path = tmp_path / version / names[version]
        path.parent.mkdir()
        path.write_text(text + "\n")
        paths.append(path)
    return paths


@pytest.mark.parametrize("texts, expected", [
    ({"v2": "1048576"}, (1048576, CGROUP)),
    ({"v1": "2097152"}, (2097152, CGROUP)),
    ({"v2": "3145728", "v1": "2097152"}, (2097152, CGROUP)),  # the lower of the two
    ({"v2": "max"}, PHYSICAL),                                 # v2's "no limit"
    ({"v1": "9223372036854771712"}, PHYSICAL),                 # v1's "no limit"
    ({"v2": "not a number"}, PHYSICAL),
    ({}, PHYSICAL),                                            # no cgroup file
], ids=["v2", "v1", "both", "v2-max", "v1-unlimited", "garbage", "none"])
def test_the_cpu_memory_is_the_lower_of_physical_and_the_cgroup_limit(tmp_path, texts,
                                                                      expected):
    assert networks.memory_of(CPU, cgroup_files=_files(tmp_path, **texts)) == expected


def test_a_network_beyond_the_cgroup_limit_is_refused_before_training(tmp_path, monkeypatch,
                                                                      capsys):
    """Far below the physical memory, above the cgroup's 64 KiB: refused (exit 2), naming the
    limit, before the run folder is made."""
    files = _files(tmp_path, v2=str(64 * 1024))
    monkeypatch.setattr(networks, "cgroup_memory_limit_files", lambda: files)
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    assert main(train_argv(data, tmp_path / "ckpt")) == 2
    err = capsys.readouterr().err
    assert f"more than {CGROUP} (64.0 KiB); lower --ngf" in err, err
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("proc, expected", [
    # a job runner's group without a namespace of its own: the group and every parent
    ("0::/jobs/run7\n", ["jobs/run7/memory.max", "jobs/memory.max", "memory.max"]),
    ("4:memory:/process_api/ab\n9:name=systemd:/\n", [
        "memory/process_api/ab/memory.limit_in_bytes", "memory/process_api/memory.limit_in_bytes",
        "memory/memory.limit_in_bytes"]),
    ("3:cpu,memory:/\n", ["memory/memory.limit_in_bytes"]),   # a container's namespace: root
    ("0::/\n", ["memory.max"]),
    ("7:pids:/x\n", [])])
def test_the_limit_files_are_this_process_s_group_and_its_parents(tmp_path, proc, expected):
    (tmp_path / "cgroup").write_text(proc)
    mount = tmp_path / "fs"
    found = networks.cgroup_memory_limit_files(tmp_path / "cgroup", mount)
    assert [str(path.relative_to(mount)) for path in found] == expected


def test_a_parent_group_s_limit_applies(tmp_path):
    """systemd-run -p MemoryMax on a parent slice: the process's own group says "max"."""
    (tmp_path / "cgroup").write_text("0::/slice/job\n")
    mount = tmp_path / "fs"
    (mount / "slice" / "job").mkdir(parents=True)
    (mount / "slice" / "job" / "memory.max").write_text("max\n")
    (mount / "slice" / "memory.max").write_text(f"{1 << 20}\n")
    files = networks.cgroup_memory_limit_files(tmp_path / "cgroup", mount)
    assert networks.cgroup_memory_limit(files) == 1 << 20
