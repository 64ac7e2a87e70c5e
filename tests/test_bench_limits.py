"""`fastp2p bench` limits and stops: a job cut by --time-budget is skipped (not failed), a
multi-process job cut by its limit leaves no rank running, the user's stop inside an end-to-end
job stops the bench, and bad --peer-time-limit / --time-budget / --peers values are refused."""
import argparse
import multiprocessing
import os
import time

import pytest

from fastp2p.bench import command, end_to_end, suite
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Job, Log, Runner
from fastp2p.bench.timing import TimeLimitExceeded, time_limit


@pytest.fixture
def quiet_log():
    with open(os.devnull, "w") as sink:
        yield Log(sink)


def test_a_job_cut_by_the_time_budget_is_skipped_and_not_a_failure(quiet_log):
    runner = Runner(job_time_limit=30, time_budget=0.5, log=quiet_log)
    (row,) = runner.run(Job("training", "slow", lambda: time.sleep(5), {"peer": "a"}))
    assert row["status"] == "skipped" and row["peer"] == "a"
    assert row["error"].startswith("cut by --time-budget after ")
    assert command.failed_jobs({"training": [row]}) == []


def test_a_job_cut_by_its_own_time_limit_still_fails(quiet_log):
    runner = Runner(job_time_limit=0.3, time_budget=60, log=quiet_log)
    (row,) = runner.run(Job("training", "slow", lambda: time.sleep(5), {"peer": "a"}))
    assert row["status"] == "failed" and "time limit" in row["error"]
    assert len(command.failed_jobs({"training": [row]})) == 1


def _sleeping_rank(rank, *args):
    time.sleep(60)


def test_ranks_of_a_job_cut_by_its_time_limit_are_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(end_to_end, "_rank_main", _sleeping_rank)
    began = time.monotonic()
    try:
        with pytest.raises(TimeLimitExceeded):
            with time_limit(1.0):
                end_to_end.run_processes(["train"], 1, 2, tmp_path)
        # none left running into the next job (active_children also reaps the ended ones)
        assert multiprocessing.active_children() == []
        assert time.monotonic() - began < 30
    finally:
        for child in multiprocessing.active_children():
            child.kill()
            child.join()


def test_stop_processes_kills_a_rank_that_ignores_sigterm():
    class Stubborn:
        def __init__(self):
            self.alive, self.calls = True, []

        def is_alive(self):
            return self.alive

        def terminate(self):
            self.calls.append("terminate")

        def join(self, timeout=None):
            self.calls.append("join")

        def kill(self):
            self.calls.append("kill")
            self.alive = False

    rank = Stubborn()
    end_to_end.stop_processes([rank], grace_s=0.01)
    assert rank.calls == ["terminate", "join", "kill", "join"] and not rank.is_alive()


@pytest.mark.parametrize("code", [130, 143, 129])
def test_the_users_stop_inside_an_end_to_end_job_stops_the_bench(code, monkeypatch, tmp_path,
                                                                 quiet_log):
    """SIGHUP too: the job was said failed (exit code 129) and the next jobs ran (QA interrupt
    3), where a hang-up at any other moment ends the bench."""
    from fastp2p.train import train_command

    calls = []

    def stopped_by_the_user(args, times, name_files):
        calls.append(args.batch_size)
        return code     # what train returns after saving on Ctrl-C, SIGTERM or SIGHUP

    monkeypatch.setattr(train_command, "run", stopped_by_the_user)
    monkeypatch.setattr(end_to_end, "make_packed_set", lambda root, pairs, load: tmp_path)
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    settings = suite.SuiteSettings(
        quick=True, device="cpu", sections=("end-to-end",), config=QUICK_CONFIG,
        batch_sizes=(1, 2), steps=1, warmup=1, peers=(peer_by_name("fastp2p"),),
        job_time_limit=None, time_budget=None, benchmarks_dir=None, inference_rep_ms=1.0)
    with pytest.raises(KeyboardInterrupt) as stop:
        suite.run_suite(settings, log=quiet_log)
    assert stop.value.exit_code == code
    assert calls == [1]     # the second job never started


def _parse(*argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--quick", *argv])


@pytest.mark.parametrize("option", ["--peer-time-limit", "--time-budget"])
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "soon"])
def test_time_options_take_finite_positive_seconds(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(option, value)
    assert exit_info.value.code == 2
    assert f"argument {option}: must be a finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--peer-time-limit", "--time-budget"])
def test_time_options_past_a_week_are_refused_before_the_run(option, capsys):
    # 1e10 s passed, and every job failed: setitimer's "timestamp out of range"
    with pytest.raises(SystemExit) as exit_info:
        _parse(option, "1e10")
    assert exit_info.value.code == 2
    assert (f"argument {option}: must be at most 604800 seconds (a week), got '1e10'"
            in capsys.readouterr().err)
    assert getattr(_parse(option, "604800"), option[2:].replace("-", "_")) == 604800


def test_time_options_accept_fractions():
    args = _parse("--peer-time-limit", "0.5", "--time-budget", "12.5")
    assert (args.peer_time_limit, args.time_budget) == (0.5, 12.5)


@pytest.mark.parametrize("option, value, error", [
    ("--steps", "0", "must be >= 1, got 0"), ("--warmup", "-1", "must be >= 0, got -1"),
    ("--sections", "bogus", "takes a comma-separated subset of"),
    ("--sections", ",", "takes a comma-separated subset of"),
    ("--peers", "bogus", "unknown peer 'bogus'"), ("--peers", "", "takes a comma-separated list"),
    ("--peers", " , ", "takes a comma-separated list"),
    ("--micro", ",", "takes a comma-separated list of bench_*.py module names")])
def test_a_wrong_option_value_is_the_usage_and_one_error_line(option, value, error, capsys):
    """As for --batch-sizes and every other option: --steps, --warmup, --sections and --peers
    were one line without the usage, and --steps's named --warmup and its default too."""
    from fastp2p.cli import main

    assert main(["bench", option, value]) == 2
    usage, line = capsys.readouterr().err.splitlines()
    assert usage.startswith("usage: fastp2p bench ")
    assert line.startswith(f"fastp2p bench: error: argument {option}: {error}"), line


def test_a_stopped_bench_says_where_its_results_are_and_exits_130(monkeypatch, tmp_path,
                                                                  capsys):
    def stopped(settings, on_progress):
        on_progress({"stand-in": "results of the jobs before"})
        raise KeyboardInterrupt("fastp2p train stopped by SIGINT (exit code 130)")

    written = []

    def write_json(results, out_dir):
        written.append(results)
        return out_dir / "run.json"
    monkeypatch.setattr(suite, "run_suite", stopped)
    monkeypatch.setattr("fastp2p.bench.results_files.write_json", write_json)
    assert command.run(_parse("--sections", "training", "--out", str(tmp_path))) == 130
    assert written == [{"stand-in": "results of the jobs before"}]
    err = capsys.readouterr().err
    assert "stopped (fastp2p train stopped by SIGINT" in err and str(tmp_path / "run.json") in err



def test_a_plain_ctrl_c_names_itself(monkeypatch, tmp_path, capsys):
    def interrupted(settings, on_progress):
        raise KeyboardInterrupt     # Ctrl-C: no text
    monkeypatch.setattr(suite, "run_suite", interrupted)
    assert command.run(_parse("--sections", "training", "--out", str(tmp_path))) == 130
    assert "stopped (KeyboardInterrupt)" in capsys.readouterr().err
