"""A stopped `fastp2p bench` says it was stopped and where its results are: SIGTERM is handled as
Ctrl-C is (it ended the run at once, silently, exit code -15, whatever had been measured unsaid),
the message names the results file, or says that nothing was saved (it named the out folder,
empty when no job had finished), and a stop inside an end-to-end job says that the checkpoint
the trainer names was in the job's temporary folder, removed since."""
import json
import os
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

from fastp2p.bench import command, end_to_end, stops, suite
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Log
from helpers.bench_helpers import bench_args, micro_folder

# what command.run reads of the settings before the patched run_suite: the results' name
QUICK_CPU = SimpleNamespace(device="cpu", quick=True)

RESULTS = {"schema": 1, "run_id": "stopped-run", "mode": "quick", "device_slug": "cpu",
           "environment": {"device": "cpu", "date_utc": "2026-12-04 10:00", "date": "20261204",
                           "commit": "abc1234", "python": "3.11.9"},
           "config": {"network_description": "unet_64", "steps": 1, "warmup": 0},
           "training": [], "complete": False}


def test_a_stop_names_the_file_that_holds_the_results(tmp_path, monkeypatch, capsys):
    def stopped(settings, on_progress=None):
        on_progress(RESULTS)
        raise KeyboardInterrupt
    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)
    monkeypatch.setattr(suite, "run_suite", stopped)
    assert command.run(bench_args("--out", tmp_path)) == 130
    saved = tmp_path / "cpu-20261204-abc1234-quick.json"
    assert json.loads(saved.read_text())["run_id"] == "stopped-run"
    err = capsys.readouterr().err.strip()
    assert err == (f"fastp2p bench: stopped (KeyboardInterrupt); the results of the jobs that "
                   f"finished are in {saved} (--plot it for the table and chart)"), err


def test_a_stop_before_any_job_finished_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    def stopped(settings, on_progress=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)
    monkeypatch.setattr(suite, "run_suite", stopped)
    assert command.run(bench_args("--out", tmp_path / "out")) == 130
    assert capsys.readouterr().err.strip() == (
        "fastp2p bench: stopped (KeyboardInterrupt); nothing was saved")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_stop_inside_end_to_end_says_its_checkpoint_is_gone(monkeypatch, tmp_path):
    from fastp2p.train import train_command

    monkeypatch.setattr(train_command, "run", lambda args, times, name_files: 128 + signal.SIGTERM)
    monkeypatch.setattr(end_to_end, "make_packed_set", lambda root, pairs, load: tmp_path)
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    settings = suite.SuiteSettings(
        quick=True, device="cpu", sections=("end-to-end",), config=QUICK_CONFIG,
        batch_sizes=(1,), steps=1, warmup=1, peers=(peer_by_name("fastp2p"),),
        job_time_limit=None, time_budget=None, benchmarks_dir=None, inference_rep_ms=1.0)
    with open(os.devnull, "w") as sink, pytest.raises(KeyboardInterrupt) as stop:
        suite.run_suite(settings, log=Log(sink))
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert str(stop.value) == ("fastp2p train stopped by SIGTERM (exit code 143); the "
                               "checkpoint it saved was in this job's temporary folder, "
                               "removed with it")


SLOW = "import time\n\ndef collect(quick):\n    time.sleep(120)\n"
FINE = 'def collect(quick):\n    return [{"name": "fine", "median_ms": 1.0}]\n'


def test_sigterm_during_a_micro_module_saves_what_was_measured_and_says_so(tmp_path):
    folder = micro_folder(tmp_path, a_fine=FINE, b_slow=SLOW)
    out = tmp_path / "out"
    bench = subprocess.Popen(
        [sys.executable, "-m", "fastp2p", "bench", "--quick", "--sections", "micro",
         "--benchmarks-dir", str(folder), "--out", str(out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, bench.kill)  # a bench that never gets there fails, not hangs
    watchdog.start()
    try:
        for line in bench.stdout:
            if "micro: bench_b_slow ..." in line:
                break
        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=60)
    finally:
        watchdog.cancel()
        bench.kill()
    assert bench.returncode == 128 + signal.SIGTERM, err
    (saved,) = out.glob("*.json")
    assert err.strip().endswith(f"fastp2p bench: stopped (SIGTERM received); the results of the "
                                f"jobs that finished are in {saved} (--plot it for the table "
                                "and chart)"), err
    results = json.loads(saved.read_text())
    assert results["complete"] is False
    assert [(row["module"], row["status"]) for row in results["micro"]] == [
        ("bench_a_fine", "ok")]


def test_a_bench_body_off_the_main_thread_runs_without_stop_handlers():
    """A bench run started from another thread (a notebook's worker, a GUI): Python refuses
    signal handlers there, and stop_signals raised ValueError after marking its state in use;
    now the body runs with the handlers as they were, as training's StopRequests does."""
    before = [signal.getsignal(number) for number in stops.SIGNALS]
    outcome = []

    def body():
        try:
            with stops.stop_signals():
                outcome.append("ran")
        except Exception as err:  # noqa: BLE001 - the test reports whatever it is
            outcome.append(repr(err))
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert outcome == ["ran"]
    assert [signal.getsignal(number) for number in stops.SIGNALS] == before
    stops.raise_if_stopped()  # no stop recorded: returns
