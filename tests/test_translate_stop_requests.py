"""`fastp2p test` and its stop requests, errors and leftovers (a reviewer's repros, each failing
before its fix): run from a thread it works; a data loader worker that died is one line; a
page that cannot be written says the images are whole; stop requests once the images are
written change nothing, a second one exits with 128 + its signal, later ones are ignored
until the command returns; a folder at index.html or at a temporary file's name is named or
left alone."""
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import fastp2p.data.datasets as datasets_module
import fastp2p.train.html_page as html_page
import fastp2p.train.sample_images as sample_images
from fastp2p.cli import main
from helpers.data_helpers import dead_pid
from helpers.train_helpers import (TEST_PAIRS, one_line, tiny_test_argv, tiny_test_results,
                                   trained)  # noqa: F401 (fixture)
from test_disk_full_messages import NO_SPACE

L1_REPORT = "L1 to real_B over"


def test_the_command_runs_from_a_thread_without_touching_signal_handlers(tmp_path, trained):
    """signal.signal raises outside the main thread: the run failed in one line, rc 1, after
    removing an earlier run's page."""
    data, checkpoints = trained
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    codes = []
    thread = threading.Thread(target=lambda: codes.append(main(tiny_test_argv(
        data, checkpoints, tmp_path))))
    thread.start()
    thread.join(timeout=300)
    assert codes == [0]
    assert (tiny_test_results(tmp_path) / "index.html").is_file()
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_a_killed_loader_worker_is_one_line_and_the_results_partial(tmp_path, trained,
                                                                    monkeypatch, capfd):
    """It was torch's traceback, rc 1, and nothing said the results were partial."""
    data, checkpoints = trained
    command, image_saved = os.getpid(), tmp_path / "image-saved"
    original_load, original_save = datasets_module.PairDataset.load, sample_images.save_image

    def load_or_oom_kill(self, index, rng):
        if index == 1 and os.getpid() != command:   # the worker, at the second pair
            # once the command holds the first pair (its images saved): nothing is in flight
            deadline = time.monotonic() + 60
            while not image_saved.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        return original_load(self, index, rng)

    def save_and_say(image, path, aspect_ratio=1.0):
        original_save(image, path, aspect_ratio)
        image_saved.touch()
    monkeypatch.setattr(datasets_module.PairDataset, "load", load_or_oom_kill)
    monkeypatch.setattr(sample_images, "save_image", save_and_say)
    argv = tiny_test_argv(data, checkpoints, tmp_path)
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    assert main(argv) == 1
    out, err = capfd.readouterr()
    line = one_line(err)
    assert line.startswith("fastp2p test: error: a data loader worker died ("), line
    assert "Killed" in line, line
    assert "lower --num_threads, then run again" in line and "--continue_train" not in line
    assert f"{tiny_test_results(tmp_path)} are partial (" in line and "no index.html)" in line, line
    assert "Traceback" not in out + err
    assert not (tiny_test_results(tmp_path) / "index.html").exists()


def test_a_page_that_cannot_be_written_says_the_images_are_whole(tmp_path, trained,
                                                                 monkeypatch, capsys):
    """It said "partial (3 of 3 images written, no index.html)", as if images were missing."""
    data, checkpoints = trained

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE, str(path))
    monkeypatch.setattr(html_page, "write_html", disk_full)
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 1
    error = one_line(capsys.readouterr().err)
    images = tiny_test_results(tmp_path) / "images"
    page = tiny_test_results(tmp_path) / "index.html"
    assert error == (f"fastp2p test: error: {page}: {NO_SPACE}; the images are "
                     f"whole ({TEST_PAIRS} of {TEST_PAIRS} written, in {images}): only their page "
                     "failed"), error
    assert len(os.listdir(images)) == 3 * TEST_PAIRS


# Signals in this process would end pytest without the fixes: the run is a child process, which
# sends itself the signals PLAN names at these points: "save N" after the N-th image file is
# written (its temporary file, not yet renamed), "page" before index.html is written, "close"
# before the loader's workers are stopped, "exit" after main returns. With "entry", main runs
# as the `fastp2p` command does: no argv, so the process ends with it.
_SIGNALS_AT = """
import json, os, signal, sys
import PIL.Image
import fastp2p.train.html_page as html_page
from fastp2p.cli import main
from fastp2p.data.loader import PairLoader
plan, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def send(point):
    for name in plan.get(point, ()):
        os.kill(os.getpid(), getattr(signal, name))
original_save, saves = PIL.Image.Image.save, []
def save_then_send(self, *args, **kwargs):
    original_save(self, *args, **kwargs)
    saves.append(1)
    send(f"save {len(saves)}")
original_page, original_close = html_page.write_html, PairLoader.close
def send_then_write_html(*args, **kwargs):
    send("page")
    original_page(*args, **kwargs)
def send_then_close(self):
    send("close")
    original_close(self)
PIL.Image.Image.save = save_then_send
html_page.write_html, PairLoader.close = send_then_write_html, send_then_close
sys.argv = ["fastp2p", *argv]
code = main(None if plan.get("entry") else argv)
send("exit")
sys.exit(code)
"""


def _run_signalled(tmp_path, trained, plan: dict) -> subprocess.CompletedProcess:
    data, checkpoints = trained
    argv = tiny_test_argv(data, checkpoints, tmp_path)
    return subprocess.run([sys.executable, "-c", _SIGNALS_AT, json.dumps(plan), json.dumps(argv)],
                          cwd=tmp_path,   # not the checkout: its fastp2p/ would shadow the install
                          capture_output=True, text=True, timeout=300)


def test_stop_requests_once_the_images_are_written_leave_the_run_complete(tmp_path, trained):
    """Two SIGTERMs while the page was written: no L1 report, the results called partial and
    no page, exit code 130."""
    run = _run_signalled(tmp_path, trained, {"page": ["SIGTERM", "SIGTERM"]})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert L1_REPORT in run.stdout and "partial" not in output, output
    page = (tiny_test_results(tmp_path) / "index.html").read_text(encoding="utf-8")
    assert "partial" not in page and f"images/{TEST_PAIRS - 1:03d}_fake_B.png" in page


def test_stop_requests_after_the_command_returns_leave_the_fastp2p_process_complete(
        tmp_path, trained):
    """A SIGTERM after the report, as the process ended, killed it (-15: a stopped run's
    143 in a shell); a Ctrl-C there printed a traceback (exit 1)."""
    run = _run_signalled(tmp_path, trained, {"entry": True, "exit": ["SIGTERM", "SIGINT"]})
    assert run.returncode == 0, run.stdout + run.stderr
    assert L1_REPORT in run.stdout and run.stderr == "", run.stdout + run.stderr


def test_a_schedulers_checkpoint_warning_is_said_and_the_run_goes_on(tmp_path, trained):
    """SIGUSR1 / SIGUSR2 (SLURM's --signal warning before a job's time limit) killed the run
    by default, the page unwritten; training saves a checkpoint on them, test has none."""
    run = _run_signalled(tmp_path, trained, {"save 2": ["SIGUSR1"], "save 5": ["SIGUSR2"]})
    assert run.returncode == 0, run.stdout + run.stderr
    assert L1_REPORT in run.stdout
    for name in ("SIGUSR1", "SIGUSR2"):
        assert f"{name} received: fastp2p test has no checkpoint to save" in run.stderr
    page = (tiny_test_results(tmp_path) / "index.html").read_text(encoding="utf-8")
    assert "partial" not in page and f"images/{TEST_PAIRS - 1:03d}_fake_B.png" in page


def test_a_second_sigterm_stops_at_once_with_128_plus_15(tmp_path, trained):
    """Both while the first image is written: the exit code was 130 whatever the signal."""
    run = _run_signalled(tmp_path, trained, {"save 2": ["SIGTERM"], "save 3": ["SIGTERM"]})
    assert run.returncode == 128 + signal.SIGTERM, run.stdout + run.stderr
    results = tiny_test_results(tmp_path)
    assert one_line(run.stderr) == (f"fastp2p test: stopped (a second stop request: stopped at "
                                    f"once; the results in {results} are partial "
                                    "(no index.html))")
    assert not (tiny_test_results(tmp_path) / "index.html").exists()


def test_stop_requests_while_the_command_ends_are_ignored(tmp_path, trained):
    """Ctrl-C stops after the first image; a SIGTERM while the loader's workers are stopped
    ended the process there (exit -15), before the lines saying what was written."""
    run = _run_signalled(tmp_path, trained, {"save 2": ["SIGINT"], "close": ["SIGTERM"]})
    assert run.returncode == 128 + signal.SIGINT, run.stdout + run.stderr
    assert L1_REPORT in run.stdout, run.stdout + run.stderr
    assert run.stderr == (f"SIGINT received: stopped after 1 of {TEST_PAIRS} images; the results "
                          "are partial, and index.html says so\n"), run.stderr
    page = (tiny_test_results(tmp_path) / "index.html").read_text(encoding="utf-8")
    assert f"(partial: stopped by SIGINT after 1 of {TEST_PAIRS} images)" in page


def test_a_folder_at_index_html_is_named_before_anything_is_written(tmp_path, trained, capsys):
    """It said a bare "index.html: Is a directory"."""
    data, checkpoints = trained
    page = tiny_test_results(tmp_path) / "index.html"
    page.mkdir(parents=True)
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 1
    assert one_line(capsys.readouterr().err) == (f"fastp2p test: error: {page}: is a folder, "
                                                 "where a file is written; move it away")
    assert os.listdir(tiny_test_results(tmp_path)) == ["index.html"] and page.is_dir()


def test_a_folder_named_like_a_temporary_file_is_left_alone(tmp_path, trained):
    """The sweep of killed runs' temporary files unlinked it: the run stopped with "Is a
    directory"."""
    data, checkpoints = trained
    folder = tiny_test_results(tmp_path) / "images" / f".d.tmp-{dead_pid()}.png"
    folder.mkdir(parents=True)
    assert main(tiny_test_argv(data, checkpoints, tmp_path)) == 0
    assert folder.is_dir()


def test_the_sweep_of_temporary_files_removes_regular_files_only(tmp_path):
    from fastp2p.atomic_files import remove_left_by_dead_processes
    dead = dead_pid()
    left = tmp_path / f".a.png.tmp-{dead}.png"
    left.write_bytes(b"partial")
    folder, link = tmp_path / f".b.png.tmp-{dead}.png", tmp_path / f".c.png.tmp-{dead}.png"
    folder.mkdir()
    link.symlink_to(left)
    remove_left_by_dead_processes(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [folder.name, link.name]
