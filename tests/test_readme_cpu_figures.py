"""The README's CPU inference figures are those of the results files it names."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEWEST = "cpu-inference-2core-xeon-f6m207-20261208-b105cb52-batch1.json"

# Skipped outside a checkout only: skipping when NEWEST is missing hid exactly the missing file
# that test_results_files_named_exist is there to report.
pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").is_file(),
                                reason="needs the source checkout")


def _ratio(rows, mode, reference_layout):
    by = {(r["mode"], r["model"], r["layout"]): r["median_ms"] for r in rows}
    return by[(mode, "reference", reference_layout)] / by[(mode, "fastp2p.UNet", "channels_last")]


@pytest.mark.parametrize("readme", ["README.md", "benchmarks/README.md"])
def test_results_files_named_exist(readme):
    text = (ROOT / readme).read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![.\w-])(cpu-inference-[\w.-]+?\.json)", text))
    assert NEWEST in named
    missing = [name for name in named if not (ROOT / "benchmarks" / "results" / name).is_file()]
    assert not missing


# The README's first table: the newest run on each kind of 2-core CPU, and what its file says
# the CPU is.
NEWEST_RUNS = {
    "`AMD EPYC` (Zen 4)": ("cpu-inference-2core-epyc-zen4-20261207-55ead536-batch1.json",
                           "AMD EPYC (family 25, model 17)"),
    "`AMD EPYC` (Zen 3)": ("cpu-inference-2core-epyc-zen3-20261207-3d05e75d-batch1.json",
                           "AMD EPYC (family 25, model 1)"),
    "`AMD EPYC` (Zen 1)": ("cpu-inference-2core-epyc-zen1-20261205-d8e8908e-batch1.json",
                           "AMD EPYC (family 23, model 1)"),
    "`Intel(R) Xeon(R) Processor` (family 6, model 207)": (
        NEWEST, "Intel(R) Xeon(R) Processor (family 6, model 207)"),
    # a run before the bench recorded the family and model: maybe the same kind, maybe not
    "`Intel(R) Xeon(R) Processor` (model not recorded)": (
        "cpu-inference-2core-xeon-20261204-06a0828a-stop35-batch1.json",
        "Intel(R) Xeon(R) Processor"),
}


def _table_row(label) -> list:
    """The cells of the README table's row for the CPU ``label``."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    row = [line for line in lines if line.startswith(f"| {label} |")]
    assert len(row) == 1, row
    return [cell.strip() for cell in row[0].strip("|").split("|")]


@pytest.mark.parametrize("label", NEWEST_RUNS)
def test_the_readme_table_gives_each_cpus_newest_run(label):
    """Each row's ratios (against the reference channels-last / NCHW), commit, load and
    dropout are its file's: 2 threads, batch 1."""
    name, cpu = NEWEST_RUNS[label]
    rows = [row for row in json.loads((ROOT / "benchmarks" / "results" / name).read_text())
            if row.get("bench", "unet") == "unet" and row["threads"] == 2
            and row["batch_size"] == 1]
    assert {row["cpu"] for row in rows} == {cpu}
    _, run, eval_cell, train_cell = _table_row(label)
    assert name in run and rows[0]["commit"] in run and not rows[0]["dirty"]
    assert f"load {rows[0]['load_average'][0]}" in run
    for mode, cell in (("eval", eval_cell), ("train", train_cell)):
        mode_rows = [row for row in rows if row["mode"] == mode]
        assert cell.startswith(f"{_ratio(mode_rows, mode, 'channels_last'):.2f}x / "
                               f"{_ratio(mode_rows, mode, 'nchw'):.2f}x"), (mode, cell)
    with_dropout = all(row.get("dropout", False) for row in rows)
    assert ("(no dropout)" in train_cell) == (not with_dropout)
