"""benchmarks/README.md says which CPUs its committed CPU figures come from: it said "all on the
project's 2-core Xeon" beside results files from AMD EPYCs (Zen 1 and Zen 4)."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("cpu-inference-*.json"))

pytestmark = pytest.mark.skipif(not RESULTS, reason="needs the source checkout")


def _cpus(path):
    rows = json.loads(path.read_text())
    return {row["cpu"].split(" (")[0] for row in rows if "cpu" in row}


def test_the_readme_does_not_say_every_cpu_run_is_on_the_xeon():
    cpus = set().union(*map(_cpus, RESULTS))
    readme = " ".join((ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8").split())
    assert len(cpus) > 1, cpus  # the claim below would be true with one
    assert "all on the project's 2-core" not in readme
    assert "cpu-inference-2core-epyc-" in readme
    assert "the main README's table quotes" not in readme  # it gives prose there
