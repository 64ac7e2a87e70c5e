"""What a result was measured on: device, driver, CUDA, torch, triton, commit, date, and how
busy the machine was when the run began."""
import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from fastp2p.bench.machine_load import machine_load
from fastp2p.cpu_info import cpu_model


def _is_checkout(folder: Path) -> bool:
    return (folder / "benchmarks" / "__init__.py").is_file() and (folder / "fastp2p").is_dir()


def package_checkout():
    """The source checkout that holds the imported fastp2p package (an editable install, or
    run from the checkout), or None (an installed wheel): where the code that runs comes from,
    so its commit and its ``benchmarks/`` are the ones a result records and runs, whatever the
    working directory."""
    import fastp2p

    folder = Path(fastp2p.__file__).resolve().parents[1]
    return folder if _is_checkout(folder) else None


def find_checkout(start=None):
    """A fastp2p source checkout (holding ``benchmarks/`` and ``fastp2p/``), or None.

    Looks upwards from ``start`` (default: the working directory), then beside the imported
    package (an editable install). For what a result records, use ``package_checkout``: the
    working directory may be another checkout than the code that runs.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if _is_checkout(folder):
            return folder
    return package_checkout()


def _git(checkout, *args):
    if checkout is None:
        return None
    try:
        result = subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_commit(checkout):
    """(short commit, dirty) of the checkout; ("unknown", None) when it is not the top of a git
    checkout (a folder inside another repository does not get that repository's commit)."""
    top = _git(checkout, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(checkout).resolve():
        return "unknown", None
    commit = _git(checkout, "rev-parse", "--short=8", "HEAD")
    if commit is None:
        return "unknown", None
    status = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def nvidia_driver():
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}, {os.cpu_count()} cores)"


def device_slug(device) -> str:
    """A file-name-safe device label: ``nvidia-h100-80gb-hbm3``, ``cpu``."""
    if torch.device(device).type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def file_date(now: datetime.datetime | None = None) -> str:
    """The UTC date (of ``now``, default the current time) in results' file names: YYYYMMDD."""
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%d")


def describe(device, checkout) -> dict:
    """Everything needed to reproduce or compare a run, as JSON-ready values."""
    import fastp2p
    from fastp2p.build_fingerprint import build_fingerprint

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    cuda = torch.device(device).type == "cuda"
    commit, dirty = git_commit(checkout)
    now = datetime.datetime.now(datetime.timezone.utc)
    info = {
        "device": device_name(device),
        "device_type": torch.device(device).type,
        "driver": nvidia_driver() if cuda else None,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch": torch.__version__,
        "triton": triton_version,
        "fastp2p": fastp2p.__version__,
        # what tells builds apart where there is no commit (an installed package's "unknown")
        "build": build_fingerprint(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        **machine_load(),
        "commit": commit,
        "commit_dirty": dirty,
        "date_utc": now.strftime("%Y-%m-%d %H:%M:%S"),
        "date": file_date(now),
    }
    if cuda:
        props = torch.cuda.get_device_properties(device)
        info["multiprocessors"] = props.multi_processor_count
        info["memory_bytes"] = props.total_memory
    return info
