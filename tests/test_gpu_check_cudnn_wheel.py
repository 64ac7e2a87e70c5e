"""benchmarks/gpu_check.sh and the nvidia-cudnn-frontend wheel carried in .whl/, run with a
stand-in interpreter (no GPU, no install): with a wheel there it is installed with pip's
offline flags into $CUDNN_FE_SITE, and the conv stage's benchmark runs with that folder on
PYTHONPATH; without one, the log says the cuDNN-graph provider will be recorded as not
installed and the check goes on."""
from helpers.gpu_check_runs import run_gpu_check, scratch_checkout

# Answers every call of the script's $PY: records pip installs and the conv timing's
# PYTHONPATH; the conv timing writes the table it was asked for.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1 $2 $3" == "-m pip install" ]]; then
    echo "pip $*" >> "$FAKE_CALLS"
elif [[ "$1" == benchmarks/conv_layer_timing.py ]]; then
    echo "conv PYTHONPATH=${PYTHONPATH:-}" >> "$FAKE_CALLS"
    while [[ $# -gt 0 && "$1" != --out ]]; do shift; done
    echo '{"fused": [], "measured": []}' > "$2"
fi
exit 0
"""


def _run_check(tmp_path, wheel: bool):
    checkout = scratch_checkout(tmp_path)
    if wheel:
        (checkout / ".whl").mkdir()
        (checkout / ".whl" / "nvidia_cudnn_frontend-1.32.0-cp312-none-any.whl").write_text("")
    site = tmp_path / "site"
    run = run_gpu_check(tmp_path, checkout, FAKE_PYTHON, "conv", CUDNN_FE_SITE=str(site))
    return run.done, run.calls, site


def test_a_carried_wheel_is_installed_offline_and_on_the_path(tmp_path):
    done, calls, site = _run_check(tmp_path, wheel=True)
    assert done.returncode == 0, done.stdout + done.stderr
    wheel_installs = [c for c in calls if "--target" in c]
    assert len(wheel_installs) == 1
    for flag in ("--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                 f"--target {site}", ".whl/nvidia_cudnn_frontend-1.32.0-cp312-none-any.whl"):
        assert flag in wheel_installs[0], wheel_installs[0]
    assert f"conv PYTHONPATH={site}" in calls
    assert "install the carried wheel" in done.stdout


def test_without_a_wheel_the_provider_is_announced_not_installed(tmp_path):
    done, calls, _ = _run_check(tmp_path, wheel=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [c for c in calls if "--target" in c]
    assert "conv PYTHONPATH=" in calls
    assert "cuDNN-graph provider will be recorded as not installed" in done.stdout
