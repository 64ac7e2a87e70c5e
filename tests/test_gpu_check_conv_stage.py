"""benchmarks/gpu_check.sh's conv stage, run with a stand-in interpreter (no GPU, no install):
the arguments it gives benchmarks/conv_layer_timing.py (CONV_LAYERS), that the conv choice
table lands in the results folder and in benchmarks/results/ with how to commit it, and that a
run stopped at CONV_SECONDS keeps the table written so far and marks the check failed."""
import pytest

from helpers.gpu_check_runs import run_gpu_check, scratch_checkout

# Answers every call of the script's $PY: the install, `fastp2p info` and the CUDA probe
# succeed; the conv timing records its arguments, writes the table it was asked for, then
# sleeps FAKE_SLEEP seconds (a run longer than its limit) and exits.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == benchmarks/conv_layer_timing.py ]]; then
    echo "$*" >> "$FAKE_CALLS"
    while [[ $# -gt 0 && "$1" != --out ]]; do shift; done
    echo '{"fused": [], "measured": []}' > "$2"
    sleep "${FAKE_SLEEP:-0}"
fi
exit 0
"""


def _run_check(tmp_path, **env):
    """gpu_check.sh copied into a scratch checkout (its results copy stays there), stage conv."""
    checkout = scratch_checkout(tmp_path)
    run = run_gpu_check(tmp_path, checkout, FAKE_PYTHON, "conv", **env)
    return run.done, run.out, checkout, run.calls


@pytest.mark.parametrize("layers, flags", [(None, "--quick "), ("all", "")])
def test_the_conv_stage_keeps_the_table_and_says_where_it_goes(tmp_path, layers, flags):
    done, out, checkout, arguments = _run_check(
        tmp_path, **({"CONV_LAYERS": layers} if layers else {}))
    assert done.returncode == 0, done.stdout + done.stderr
    assert arguments == [f"benchmarks/conv_layer_timing.py {flags}--out {out}/conv_choice.json"]
    assert (out / "conv_choice.json").is_file()
    assert (checkout / "benchmarks" / "results" / "conv_choice.json").is_file()
    assert "copy it to fastp2p/ops/backends/conv_choice.json and commit" in done.stdout
    assert (out / "gpu_check.log").read_text().count("conv_choice.json") >= 1


def test_a_stage_past_its_limit_keeps_what_it_wrote_and_fails_the_check(tmp_path):
    done, out, _, _ = _run_check(tmp_path, CONV_SECONDS="1", FAKE_SLEEP="30")
    assert done.returncode == 1
    assert "conv timing incomplete" in done.stdout
    assert (out / "conv_choice.json").is_file()


def test_an_unknown_layer_set_is_refused(tmp_path):
    done, _, _, arguments = _run_check(tmp_path, CONV_LAYERS="some")
    assert done.returncode == 1 and arguments == []
    assert "CONV_LAYERS must be quick or all" in done.stdout
