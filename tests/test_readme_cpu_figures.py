"""The README's CPU inference figures are those of the results files it names."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEWEST = "cpu-inference-2core-xeon-20261204-06a0828a-stop35-batch1.json"

pytestmark = pytest.mark.skipif(not (ROOT / "benchmarks" / "results" / NEWEST).is_file(),
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


def test_readme_quotes_the_newest_run():
    rows = json.loads((ROOT / "benchmarks" / "results" / NEWEST).read_text())
    assert {row["cpu"] for row in rows} == {"Intel(R) Xeon(R) Processor"}
    assert {(row["threads"], row["batch_size"]) for row in rows} == {(2, 1)}
    figures = [f"{_ratio(rows, mode, layout):.2f}x" for layout in ("channels_last", "nchw")
               for mode in ("eval", "train")]
    assert figures == ["1.48x", "1.78x", "1.64x", "1.95x"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert ("runs at 1.48x the reference in its best layout (channels-last) in eval mode and "
            "1.78x in train mode (1.64x and 1.95x the reference's default NCHW)") in readme
    assert "is 1.45-1.51x the reference" not in readme


ZEN4_NEWEST = "cpu-inference-2core-epyc-zen4-20261206-4b26059d-batch1.json"
ZEN4_EARLIER = ("cpu-inference-2core-epyc-20261202-e62db508-batch1.json",
                "cpu-inference-2core-epyc-20261202-55ed2c04-batch1.json")


def _epyc_ratios(name):
    """{(mode, reference layout): fastp2p's ratio} of a 2-thread, batch-1 Zen 4 run."""
    rows = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
    assert {row["cpu"] for row in rows} <= {"AMD EPYC", "AMD EPYC (family 25, model 17)"}
    rows = [row for row in rows if row.get("bench") == "unet" and row["threads"] == 2
            and row["batch_size"] == 1]
    return {(mode, layout): _ratio(rows, mode, layout)
            for mode in ("eval", "train") for layout in ("channels_last", "nchw")}


def test_readme_quotes_the_zen4_epyc_runs():
    """The 2-thread Zen 4 ratios the README gives: the newest run's, then the two earlier
    runs' as ranges."""
    newest = {key: f"{value:.2f}x" for key, value in _epyc_ratios(ZEN4_NEWEST).items()}
    earlier = [_epyc_ratios(name) for name in ZEN4_EARLIER]
    spread = {key: f"{min(run[key] for run in earlier):.2f}-{max(run[key] for run in earlier):.2f}x"
              for key in earlier[0]}
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert (f"{newest['eval', 'channels_last']} the reference channels-last in eval and "
            f"{newest['train', 'channels_last']} in train mode ({newest['eval', 'nchw']} and "
            f"{newest['train', 'nchw']} its NCHW)") in readme
    assert (f"measured {spread['eval', 'channels_last']} and "
            f"{spread['train', 'channels_last']}") in readme
