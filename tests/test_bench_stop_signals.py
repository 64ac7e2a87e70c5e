"""Stop signals of `fastp2p bench` (fastp2p.bench.stops): Ctrl-C and SIGTERM are handled from the
command's start to its end, the first one stops the run and the next ones are ignored while it
stops, and only in the process that set the handlers up.

Before: SIGTERM during torch's import or --plot ended the process silently (-15); a second
SIGTERM while the stop was reported ended it with -15 too, and a second Ctrl-C printed a
traceback; a second SIGTERM while an end-to-end job's temporary folder was removed left the
folder behind; a forked worker printed a traceback for the pool's SIGTERM; the trainer's second
stop request advised --continue_train from a folder the bench deletes; and a stop a module
swallowed was lost, the run going on. Each signal is sent from inside a patched function, where
the test needs it, never by a timer."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from types import SimpleNamespace

import pytest

from fastp2p.bench import command, end_to_end, suite
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Log
from helpers.bench_helpers import bench_args, micro_folder

RESULTS = {"schema": 1, "run_id": "a-run", "mode": "quick", "device_slug": "cpu",
           "environment": {"device": "cpu", "date_utc": "2026-12-04 10:00", "date": "20261204",
                           "commit": "abc1234", "python": "3.11.9"},
           "config": {"network_description": "unet_64", "steps": 3, "warmup": 1},
           "training": [{"peer": "fastp2p", "batch_size": 1, "status": "ok",
                         "images_per_s": 10.0, "images_per_s_p20": 9.0,
                         "images_per_s_p80": 11.0, "step_ms": 100.0}]}
STOPS = {"SIGTERM": (signal.SIGTERM, "SIGTERM received"), "SIGINT": (signal.SIGINT, "Ctrl-C")}


def _bench_with(tmp_path, setup: str, *argv) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGV`` (command.main) in a new process after ``setup``, source
    that patches in the signals; outside the checkout, whose fastp2p/ would shadow the
    installed package. SIGINT raises KeyboardInterrupt there, as at a terminal (a process
    started in the background may inherit it ignored)."""
    script = tmp_path / f"bench_{uuid.uuid4().hex[:8]}.py"
    script.write_text("import os, signal, sys, types\n"
                      "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
                      "from fastp2p.bench import command, render, suite\n"
                      f"{setup}\n"
                      "sys.exit(command.main())\n")  # as python -m benchmarks calls it
    return subprocess.run([sys.executable, str(script), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def _one_line(result) -> str:
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", STOPS)
def test_a_stop_while_torch_loads_is_reported(tmp_path, name):
    number, said = STOPS[name]
    result = _bench_with(tmp_path, "def loading(args):\n"
                                   f"    os.kill(os.getpid(), {number})\n"
                                   "command.settings_from_args = loading\n",
                         "--out", str(tmp_path / "out"))
    assert result.returncode == 128 + number, result.stderr
    assert _one_line(result) == f"fastp2p bench: stopped ({said}); nothing was saved"


@pytest.mark.parametrize("name", STOPS)
def test_a_second_stop_while_the_first_is_reported_is_ignored(tmp_path, name):
    number, said = STOPS[name]
    setup = ("def run_suite(settings, on_progress=None):\n"
             f"    os.kill(os.getpid(), {number})\n"
             "suite.run_suite = run_suite\n"
             "command.settings_from_args = lambda args: types.SimpleNamespace(\n"
             "    device='cpu', quick=True)\n"
             "class Stderr:  # the second stop, as the first one's line is written\n"
             "    def __init__(self, stream):\n"
             "        self.stream, self.sent = stream, False\n"
             "    def write(self, text):\n"
             "        if not self.sent:\n"
             "            self.sent = True\n"
             f"            os.kill(os.getpid(), {number})\n"
             "        return self.stream.write(text)\n"
             "    def __getattr__(self, name):\n"
             "        return getattr(self.stream, name)\n"
             "sys.stderr = Stderr(sys.stderr)\n")
    result = _bench_with(tmp_path, setup, "--out", str(tmp_path / "out"))
    assert result.returncode == 128 + number, result.stderr
    assert _one_line(result) == f"fastp2p bench: stopped ({said}); nothing was saved"


def test_a_stop_while_plotting_says_to_plot_again(tmp_path):
    saved = tmp_path / "cpu-20261204-abc1234-quick.json"
    saved.write_text(json.dumps(RESULTS))
    result = _bench_with(tmp_path, "def plot_training(results, path):\n"
                                   f"    os.kill(os.getpid(), {signal.SIGTERM})\n"
                                   "render.plot_training = plot_training\n",
                         "--plot", str(saved))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert _one_line(result) == (f"fastp2p bench: stopped (SIGTERM received); the table and "
                                 f"chart beside {saved} may be partly remade: --plot it again")


CAUGHT = ("import os, signal\n\ndef collect(quick):\n    try:\n"
          "        os.kill(os.getpid(), signal.SIGTERM)\n"
          "    except BaseException:\n"
          "        pass\n"
          '    return [{"name": "caught", "median_ms": 1.0}]\n')
FINE = 'def collect(quick):\n    return [{"name": "fine", "median_ms": 1.0}]\n'


def test_a_stop_a_module_swallows_still_stops_the_run(tmp_path):
    folder = micro_folder(tmp_path, a_catches=CAUGHT, b_fine=FINE)
    result = subprocess.run(
        [sys.executable, "-m", "fastp2p", "bench", "--quick", "--sections", "micro",
         "--benchmarks-dir", str(folder), "--out", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "micro: bench_b_fine ..." not in result.stdout
    assert result.stderr.strip() == "fastp2p bench: stopped (SIGTERM received); nothing was saved"


def test_a_worker_forked_during_the_run_ends_on_sigterm_as_before(tmp_path, monkeypatch):
    """A pool's terminate sends its workers SIGTERM: they end by it, silently (the bench's
    handler raised its stop in them: a traceback each, and a worker holding the pool's queue
    lock could hang the terminate)."""
    statuses = []

    def run_suite(settings, on_progress=None):
        worker = os.fork()
        if worker == 0:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                os._exit(1)  # never past here in the test process's copy
        statuses.append(os.waitpid(worker, 0)[1])
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "settings_from_args",
                        lambda args: SimpleNamespace(device="cpu", quick=True))
    monkeypatch.setattr(suite, "run_suite", run_suite)
    assert command.run(bench_args("--out", tmp_path / "out")) == 130
    (status,) = statuses
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status


@pytest.fixture
def stop_handlers_put_back():
    """A stopped run leaves its handlers ignoring stops until the process ends, here pytest's,
    unless an outermost frame given an argv (fastp2p.cli.main) puts them back: command.run does
    not."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


def test_an_in_process_caller_gets_its_handlers_back_after_a_stopped_run(
        tmp_path, monkeypatch, capsys, stop_handlers_put_back):
    """`fastp2p.cli.main(argv)` from a notebook, a test, a loop of runs: a stopped run left its
    handlers in place, and the caller's Ctrl-C and SIGTERM were ignored until its process
    ended. A second run after it stops by its own signal as the first did."""
    from fastp2p import cli

    terms = []
    callers = {signal.SIGINT: signal.default_int_handler,
               signal.SIGTERM: lambda number, frame: terms.append(number)}
    for number, handler in callers.items():
        signal.signal(number, handler)
    stops = iter(STOPS.values())
    monkeypatch.setattr(suite, "run_suite",
                        lambda settings, on_progress=None: os.kill(os.getpid(), next(stops)[0]))
    monkeypatch.setattr(command, "settings_from_args",
                        lambda args: SimpleNamespace(device="cpu", quick=True))
    for number, said in STOPS.values():
        assert cli.main(["bench", "--out", str(tmp_path / "out")]) == 128 + number
        assert capsys.readouterr().err.strip() == (
            f"fastp2p bench: stopped ({said}); nothing was saved")
        assert {sig: signal.getsignal(sig) for sig in callers} == callers
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    assert terms == [signal.SIGTERM]


def _end_to_end_settings():
    return suite.SuiteSettings(
        quick=True, device="cpu", sections=("end-to-end",), config=QUICK_CONFIG,
        batch_sizes=(1,), steps=1, warmup=1, peers=(peer_by_name("fastp2p"),),
        job_time_limit=None, time_budget=None, benchmarks_dir=None, inference_rep_ms=1.0)


def _sigterm_as_the_job_folder_is_removed(tmp_path, monkeypatch, capsys, packing):
    """Run the end-to-end section with ``packing`` as its data preparation and a SIGTERM sent
    as the job's temporary folder is removed; the run must stop with 143, nothing saved, and
    no folder left behind."""
    import shutil

    remove = shutil.rmtree

    def removing(path, *args, **kwargs):
        monkeypatch.setattr(shutil, "rmtree", remove)
        os.kill(os.getpid(), signal.SIGTERM)
        return remove(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(end_to_end, "make_packed_set", packing)
    monkeypatch.setattr(shutil, "rmtree", removing)
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    monkeypatch.setattr(command, "settings_from_args", lambda args: _end_to_end_settings())
    assert command.run(bench_args("--out", tmp_path / "out")) == 128 + signal.SIGTERM
    assert list(tmp_path.glob("fastp2p-bench-e2e-*")) == []
    assert capsys.readouterr().err.strip() == (
        "fastp2p bench: stopped (SIGTERM received); nothing was saved")


def test_a_second_sigterm_while_an_end_to_end_job_cleans_up_leaves_no_folder(
        tmp_path, monkeypatch, capsys, stop_handlers_put_back):
    def packing(root, pairs, load):  # the first SIGTERM, while the job prepares its data
        (root / "synthetic").mkdir()
        (root / "synthetic" / "0.png").write_bytes(b"image")
        os.kill(os.getpid(), signal.SIGTERM)

    # the second SIGTERM as the job's folder is removed
    _sigterm_as_the_job_folder_is_removed(tmp_path, monkeypatch, capsys, packing)


def test_a_sigterm_while_an_end_to_end_job_removes_its_folder_waits_for_the_removal(
        tmp_path, monkeypatch, capsys, stop_handlers_put_back):
    stages = ("data", "step", "log", "sample", "checkpoint")
    rank = {"code": 0, "images_per_s": 1.0, "window_steps": 1, "window_s": 1.0,
            **{f"{stage}_{figure}": 1 for stage in stages for figure in ("s", "share", "calls")}}

    def packing(root, pairs, load):
        (root / "packed").mkdir()
        (root / "packed" / "shard-0").write_bytes(b"pairs")
        return root / "packed"

    # the job is done: its only SIGTERM as its folder is removed
    monkeypatch.setattr(end_to_end, "run_processes", lambda argv, skip, world, work: [rank])
    _sigterm_as_the_job_folder_is_removed(tmp_path, monkeypatch, capsys, packing)


class SecondSigterm(KeyboardInterrupt):
    exit_code = 128 + signal.SIGTERM  # a trainer that says which signal the request was


@pytest.mark.parametrize("request_type, exit_code", [(KeyboardInterrupt, 130),
                                                     (SecondSigterm, 143)],
                         ids=["plain", "with-exit-code"])
def test_the_trainers_second_stop_request_names_the_folder_gone(monkeypatch, tmp_path,
                                                                request_type, exit_code):
    from fastp2p.train import train_command

    def second_request(args, times, name_files):
        raise request_type("a second stop request: stopped at once, without saving; "
                           "--continue_train resumes from the last set saved")
    monkeypatch.setattr(train_command, "run", second_request)
    monkeypatch.setattr(end_to_end, "make_packed_set", lambda root, pairs, load: tmp_path)
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    with open(os.devnull, "w") as sink, pytest.raises(KeyboardInterrupt) as stop:
        suite.run_suite(_end_to_end_settings(), log=Log(sink))
    assert stop.value.exit_code == exit_code  # what `fastp2p train` itself exits with then
    assert str(stop.value) == ("fastp2p train stopped at once by a second stop request, "
                               "without saving; its checkpoints were in this job's temporary "
                               "folder, removed with it")
