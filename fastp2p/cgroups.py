"""The control groups whose limits apply to this process (a container's, a job runner's), from
the standard library only: option parsing counts the CPUs a CPU quota leaves (cpu_info), and
the memory check reads the memory limit (fastp2p.train.networks)."""
from pathlib import Path

PROC_CGROUP = "/proc/self/cgroup"
MOUNT = "/sys/fs/cgroup"


def group_folders(v1_controller: str, proc_cgroup=None, mount=None) -> list:
    """(folder, is_v2) for this process's group and each group above it (a parent's limit
    applies too), as ``proc_cgroup`` names the group: cgroup v2's unified tree (line
    ``0::PATH``, folders under ``mount``) and v1's tree of ``v1_controller`` (line
    ``N:...CONTROLLER...:PATH``, folders under ``mount/CONTROLLER``). In a container with its
    own cgroup namespace PATH is "/", the mount's root; a job runner's group without one
    (systemd-run, slurm) is a folder below it. An unreadable ``proc_cgroup`` names none.
    The defaults, PROC_CGROUP and MOUNT, are read at each call (tests point them at fakes)."""
    proc_cgroup = PROC_CGROUP if proc_cgroup is None else proc_cgroup
    mount = MOUNT if mount is None else mount
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    folders = []
    for line in lines:
        number, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and controllers == "":
            root, is_v2 = Path(mount), True
        elif v1_controller in controllers.split(","):
            root, is_v2 = Path(mount) / v1_controller, False
        else:
            continue
        here = root / group.strip("/")
        folders += [(parent, is_v2) for parent in (here, *here.parents)
                    if parent.is_relative_to(root)]
    return folders


def read_text(path):
    """The file's text, stripped; None where it cannot be read (no such file, no permission,
    not text): a limit nobody can read is no limit this process can follow."""
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
