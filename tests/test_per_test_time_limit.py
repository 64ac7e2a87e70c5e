"""The suite's per-test limit (pytest-timeout, set in pyproject.toml): a test that hangs ends the
run with its stack, instead of stalling CI to the machine's limit with nothing in its log."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _needs_the_plugin(config):
    if not config.pluginmanager.hasplugin("timeout"):
        pytest.skip("pytest-timeout is not installed (pip install '.[test]' brings it)")


def test_every_test_has_a_limit_by_the_watchdog_thread(pytestconfig):
    _needs_the_plugin(pytestconfig)
    assert 0 < float(pytestconfig.getini("timeout")) <= 600
    assert pytestconfig.getini("timeout_method") == "thread"


def test_a_hanging_test_ends_the_run_naming_it(pytestconfig, tmp_path):
    """The project's settings with the limit lowered to 2 s: the run ends at once, failing, and
    prints where the test hung."""
    _needs_the_plugin(pytestconfig)
    (tmp_path / "test_hang.py").write_text(
        "import time\n\ndef test_that_hangs():\n    time.sleep(120)\n")
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(PYPROJECT),
         "--rootdir", str(tmp_path), "-o", "timeout=2", str(tmp_path / "test_hang.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=100)
    assert run.returncode != 0
    assert time.monotonic() - start < 60
    assert "Timeout" in run.stdout + run.stderr
    assert 'test_hang.py", line 4, in test_that_hangs' in run.stdout + run.stderr
