"""setup.py's python_requires leaves out the Pythons whose ProcessPoolExecutor forks a fork
pool's workers one at a time, on demand (3.10.0-3.10.4, before CPython gh-90622's backport):
``fastp2p.data.worker_pool`` closes its copy of the result pipe once the first task has forked
them all, so there every worker but the first died at its first result ("a worker process died
(exited with code 1)", every pack with --workers 2 or more)."""
import ast
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").is_file(),
                                reason="needs the source checkout")


def _python_requires() -> SpecifierSet:
    """The python_requires of setup.py's setup() call, read from its text (no build run)."""
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "python_requires":
            return SpecifierSet(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no python_requires")


@pytest.mark.parametrize("version, allowed", [
    ("3.10.0", False), ("3.10.4", False), ("3.10.5", True), ("3.11.0", True), ("3.14.0", True)])
def test_pythons_that_fork_pool_workers_on_demand_are_refused(version, allowed):
    assert _python_requires().contains(version) == allowed, (version, str(_python_requires()))
