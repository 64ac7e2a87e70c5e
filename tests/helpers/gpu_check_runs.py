"""benchmarks/gpu_check.sh run on a CPU with a stand-in interpreter, for the tests of its stages:
the script is copied into a scratch checkout (so the results it copies back land there), and
every call of its $PY goes to a fake script that the test writes (it records what it was asked
in $FAKE_CALLS)."""
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

CHECKOUT = Path(__file__).resolve().parents[2]


class GpuCheckRun(NamedTuple):
    done: subprocess.CompletedProcess
    out: Path          # $OUT, the results folder
    calls: list        # the lines the fake interpreter recorded


def scratch_checkout(tmp_path: Path) -> Path:
    """A folder holding a copy of benchmarks/gpu_check.sh, laid out as the checkout."""
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks").mkdir(parents=True)
    shutil.copy(CHECKOUT / "benchmarks" / "gpu_check.sh", checkout / "benchmarks")
    return checkout


def run_gpu_check(tmp_path: Path, checkout: Path, fake_python: str, stages: str | None,
                  **env) -> GpuCheckRun:
    """Run the checkout's gpu_check.sh for ``stages`` (None: its default plan) with
    ``fake_python`` as $PY."""
    python = tmp_path / "python"
    python.write_text(fake_python)
    python.chmod(0o755)
    out, calls = tmp_path / "out", tmp_path / "calls"
    environment = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "OUT": str(out),
                   "FAKE_CALLS": str(calls), **env}
    if stages is not None:
        environment["GPU_CHECK_STAGES"] = stages
    done = subprocess.run(["bash", str(checkout / "benchmarks" / "gpu_check.sh")],
                          env=environment, capture_output=True, text=True, timeout=60)
    return GpuCheckRun(done, out, calls.read_text().splitlines() if calls.exists() else [])
