"""benchmarks/gpu_check.sh's tests stage, run with a stand-in interpreter (no GPU, no install):
the GPU tests of the default path run first, every listed option test and the long real-shapes
test left out of that run, then the option tests alone, the benchmarks once, and the real-shapes
test last, each pytest call with its own limit; every listed option test exists (a renamed file
would otherwise silently join the default run)."""
import re

from helpers.gpu_check_runs import CHECKOUT, run_gpu_check, scratch_checkout

REAL_SHAPES = "tests/norm_act/test_norm_act.py::test_gpu_real_shapes"

# Every call of the script's $PY succeeds; pytest calls record their arguments.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m pytest" ]]; then
    echo "$*" >> "$FAKE_CALLS"
fi
exit 0
"""


def _option_tests() -> list:
    script = (CHECKOUT / "benchmarks" / "gpu_check.sh").read_text()
    listed = re.search(r"OPTION_TESTS=\((.*?)\)", script, re.S).group(1)
    return listed.split()


def test_the_default_path_runs_first_and_the_options_after(tmp_path):
    run = run_gpu_check(tmp_path, scratch_checkout(tmp_path), FAKE_PYTHON, "tests")
    done = run.done
    assert done.returncode == 0, done.stdout + done.stderr
    default, options, benchmarks, real_shapes = [line.split() for line in run.calls]
    options_listed = _option_tests()
    assert default[-2 - len(options_listed):] == ["tests", f"--deselect={REAL_SHAPES}"] + [
        f"--ignore={path}" for path in options_listed]
    assert "-m" in default and "cuda" in default
    assert options[-len(options_listed):] == options_listed
    assert benchmarks[-1] == "benchmarks"
    assert real_shapes[-3:] == ["-m", "cuda", REAL_SHAPES]
    log = done.stdout
    assert log.index("pytest cuda-default-path (limit 180s)") < log.index(
        "pytest cuda-options (limit 60s)") < log.index("pytest cuda-real-shapes (limit 180s)")


def test_the_real_shapes_test_exists():
    """The default path's call deselects it by name: renamed, it would run there again."""
    path, name = REAL_SHAPES.split("::")
    assert f"def {name}(" in (CHECKOUT / path).read_text()


def test_every_listed_option_test_exists():
    for path in _option_tests():
        assert (CHECKOUT / path).exists(), path
