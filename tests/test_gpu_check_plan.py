"""benchmarks/gpu_check.sh's plan, run with a stand-in interpreter (no GPU, no install): stage
names are checked before the install (commas accepted), stages run in the order given,
GPU_CHECK_SECONDS bounds the install and every stage (a limit is cut to what is left; a step
with too little left is skipped and named, and the check fails), and each pytest call reports
its own failures, not those of the calls before it in the shared tests.log. With no settings it runs
the first call of a 15-minute GPU window (benchmarks/NOTES.md, "Stop 62"); the second call is
the one-liner benchmarks/README.md gives."""
import shlex

import pytest

from helpers.gpu_check_runs import CHECKOUT, run_gpu_check, scratch_checkout

# Records every call of the script's $PY except the CUDA probe; pytest calls fail with one
# FAILED line when their arguments hold FAKE_FAIL.
FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
    *"torch.cuda.is_available"*) exit 0;;
esac
echo "$*" >> "$FAKE_CALLS"
if [[ "$1 $2" == "-m pytest" && -n "${FAKE_FAIL:-}" && "$*" == *"$FAKE_FAIL"* ]]; then
    echo "FAILED tests/test_x.py::test_broken - AssertionError"
    echo "1 failed"
    exit 1
fi
[[ "$1 $2" == "-m pytest" ]] && echo "3 passed"
exit 0
"""


def _run(tmp_path, stages, **env):
    return run_gpu_check(tmp_path, scratch_checkout(tmp_path), FAKE_PYTHON, stages, **env)


def _stage_calls(calls):
    """The calls of the stages (not the install and `fastp2p info`)."""
    return [c for c in calls if not c.startswith(("-m pip", "-m fastp2p info"))]


def test_an_unknown_stage_stops_the_check_before_the_install(tmp_path):
    run = _run(tmp_path, "conv,benchmark")
    assert run.done.returncode == 1
    assert "unknown stage 'benchmark'" in run.done.stdout
    assert run.calls == []  # not even the install


def test_stages_run_in_the_order_given_with_commas_or_spaces(tmp_path):
    run = _run(tmp_path, "profile,choice")
    assert run.done.returncode == 0, run.done.stdout
    calls = _stage_calls(run.calls)
    assert [c.split()[0] for c in calls] == ["benchmarks/profile_step.py",
                                             "benchmarks/cuda_choice_table.py"]


def test_a_stage_limit_is_cut_to_what_is_left_of_the_total(tmp_path):
    run = _run(tmp_path, "tests", GPU_CHECK_SECONDS="100")
    log = run.done.stdout
    assert "pytest cuda-default-path (limit 80s)" in log or (
        "pytest cuda-default-path (limit 79s)" in log), log  # 100 s less the 20 s margin


def test_the_install_limit_is_cut_to_what_is_left_of_the_total(tmp_path):
    """It was 240 s whatever GPU_CHECK_SECONDS said."""
    log = _run(tmp_path, "profile", GPU_CHECK_SECONDS="100").done.stdout
    assert "install (limit 80s)" in log or "install (limit 79s)" in log, log


def test_the_install_takes_at_most_240_s_of_a_longer_total(tmp_path):
    log = _run(tmp_path, "profile", GPU_CHECK_SECONDS="460").done.stdout
    assert "install (limit 240s)" in log, log


# FAKE_PYTHON, but its pip install fails as a build does
FAILING_INSTALL = FAKE_PYTHON.replace(
    'echo "$*" >> "$FAKE_CALLS"\n',
    'echo "$*" >> "$FAKE_CALLS"\n'
    '[[ "$1 $2" == "-m pip" ]] && { echo "error: command \'nvcc\' failed"; exit 1; }\n')


def test_a_failed_install_is_named_with_its_output_and_fails_the_check(tmp_path):
    run = run_gpu_check(tmp_path, scratch_checkout(tmp_path), FAILING_INSTALL, "profile")
    assert run.done.returncode == 1, run.done.stdout
    log = run.done.stdout
    assert "install FAILED (exit 1; 124: time limit):\nerror: command 'nvcc' failed" in log, log


def test_an_install_without_time_left_is_skipped_named_and_fails_the_check(tmp_path):
    run = _run(tmp_path, "profile", GPU_CHECK_SECONDS="40")
    assert run.done.returncode == 1
    assert "install SKIPPED" in run.done.stdout
    assert not any(c.startswith("-m pip install") for c in run.calls)


def test_a_stage_without_time_left_is_skipped_named_and_fails_the_check(tmp_path):
    run = _run(tmp_path, "bench", GPU_CHECK_SECONDS="40")
    assert run.done.returncode == 1
    assert "bench SKIPPED" in run.done.stdout
    assert not any(c.startswith("-m benchmarks") for c in run.calls)


def test_bench_seconds_caps_the_benchmark(tmp_path):
    run = _run(tmp_path, "bench", GPU_CHECK_SECONDS="400", BENCH_SECONDS="100")
    assert run.done.returncode == 0, run.done.stdout
    (bench,) = [c for c in run.calls if c.startswith("-m benchmarks")]
    assert "--time-budget 85 " in bench  # the stage's 100 s less 15 s for the results


@pytest.mark.parametrize("bench_args, per_job", [
    ("--peers fastp2p", "150s per job"),
    ("--peer-time-limit 150 --peers fastp2p", "150s per job"),
    ("--peer-time-limit=90 --peer-time-limit 150.5", "150.5s per job"),
    ("--peer-time-limit 150 --peer-time-limit=90", "90s per job")])
def test_the_log_names_the_per_job_limit_the_benchmark_keeps(tmp_path, bench_args, per_job):
    """The benchmark keeps the last --peer-time-limit: BENCH_ARGS's, after the script's own.
    The log said 110 s whatever BENCH_ARGS gave."""
    log = _run(tmp_path, "bench", BENCH_ARGS=bench_args).done.stdout
    assert f"{per_job}): {bench_args}" in log, log


FIRST_CALL_PEERS = ("reference,eager-tuned,cuda-graph,fastp2p,compile-default,"
                    "compile-reduce-overhead,compile-max-autotune")


def test_the_default_plan_is_the_first_call_of_a_window(tmp_path):
    """Measure first: the benchmark, then the profile and the choice table, inside 460 s (a
    run's timeout_s of 480 less a margin). Before, the tests came first and took ~450 s of 480,
    so the benchmark was skipped."""
    run = _run(tmp_path, None)
    assert run.done.returncode == 0, run.done.stdout
    log = run.done.stdout
    assert "stages: bench profile choice (limit 460s)" in log
    bench, profile, choice = _stage_calls(run.calls)
    assert bench.startswith("-m benchmarks") and bench.endswith(
        "--time-budget 315 --peer-time-limit 150 --sections training,inference "
        f"--batch-sizes 1,64 --peers {FIRST_CALL_PEERS}")  # BENCH_SECONDS 330, less 15
    assert profile.startswith("benchmarks/profile_step.py")
    assert choice.startswith("benchmarks/cuda_choice_table.py")
    assert "150s per job" in log


def _second_call() -> dict:
    """The settings of benchmarks/README.md's one-liner for a window's second call."""
    readme = (CHECKOUT / "benchmarks" / "README.md").read_text().splitlines()
    (line,) = [line for line in readme if line.startswith("GPU_CHECK_SECONDS=")
               and "GPU_CHECK_STAGES=tests " in line]
    words = shlex.split(line)
    assert words[-2:] == ["bash", "benchmarks/gpu_check.sh"]
    return dict(word.split("=", 1) for word in words[:-2])


def test_the_second_calls_one_liner_runs_the_tests_inside_its_call(tmp_path):
    """Its run's timeout_s is 250: the check's own 20 s margin covers its last step's 10 s
    of --kill-after, so 10 s more suffice; an install as long as run 1's (23 s) leaves both
    test calls their limits."""
    settings = _second_call()
    total = int(settings["GPU_CHECK_SECONDS"])
    assert total <= 250 - 10
    assert 25 + int(settings["GPU_TEST_SECONDS"]) + int(
        settings["GPU_OPTION_TEST_SECONDS"]) <= total - 20
    log = _run(tmp_path, settings.pop("GPU_CHECK_STAGES"), **settings).done.stdout
    assert "pytest cuda-default-path (limit 150s)" in log
    assert "pytest cuda-options (limit 40s)" in log


def test_each_pytest_call_reports_only_its_own_failures(tmp_path):
    run = _run(tmp_path, "tests", FAKE_FAIL="--ignore=")  # only the default-path call fails
    assert run.done.returncode == 1
    log = run.done.stdout
    default_part, later_part = log.split("pytest cuda-default-path: FAILED")
    assert "FAILED tests/test_x.py::test_broken" in default_part
    assert "FAILED tests/test_x.py" not in later_part
    assert later_part.count("3 passed") == 3  # the three later calls' own summaries


@pytest.mark.parametrize("setting, value", [("BENCH_SECONDS", "0"), ("BENCH_SECONDS", "10"),
                                            ("CONV_SECONDS", "0"), ("GPU_TEST_SECONDS", "2m"),
                                            ("GPU_CHECK_SECONDS", "-5"),
                                            ("GPU_TEST_SECONDS", "010"),
                                            ("GPU_CHECK_SECONDS", "18446744073709551617"),
                                            ("GPU_OPTION_TEST_SECONDS", ""),
                                            ("GPU_REAL_SHAPES_SECONDS", "0"),
                                            ("BENCH_SECONDS", "")])
def test_a_limit_no_stage_can_use_stops_the_check_before_the_install(tmp_path, setting, value):
    """A limit of 0 (or one bash reads as 0, such as "2m") was `timeout 0`: no limit at all; a
    bench limit under 15 s gave it a negative budget; bash reads 010 as octal 8 and wraps a
    number past 2**63. An empty value is unset (the default)."""
    run = _run(tmp_path, "tests", **{setting: value})
    if value == "":
        assert run.done.returncode == 0, run.done.stdout
        return
    assert run.done.returncode == 1
    assert f"{setting} must be a whole number of seconds" in run.done.stdout
    assert run.calls == []
