"""`fastp2p bench --out` to a folder that cannot be written fails before any job runs, with one
line naming the folder and exit code 2 (it used to crash after the first job); so do --out
naming a file ("File exists", it said) and a FIFO or a folder at the name the results JSON is to
take (refused only at the first job's write, minutes in on a GPU). A write that fails later (a
full disk) is one line too, exit code 1, naming the results file if one was saved (a failed
table said "nothing was saved" of the complete results written just before)."""
import datetime
import errno
import os
import tempfile
from types import SimpleNamespace

import pytest

from fastp2p.bench import command
from helpers.bench_helpers import bench_args

# what command.run reads of the settings before the patched run_suite: the results' name
QUICK_CPU = SimpleNamespace(device="cpu", quick=True)


@pytest.fixture
def suite_that_must_not_run(monkeypatch):
    import fastp2p.bench.suite as suite

    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)

    def run_suite(settings, on_progress=None):
        raise AssertionError("a job ran although --out cannot be written")
    monkeypatch.setattr(suite, "run_suite", run_suite)


def test_an_out_path_under_a_file_fails_before_any_job(tmp_path, suite_that_must_not_run,
                                                        capsys):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "results"
    assert command.run(bench_args("--out", out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("fastp2p bench: error: ") and str(out) in err, err


def test_a_folder_that_refuses_files_fails_before_any_job(tmp_path, suite_that_must_not_run,
                                                          monkeypatch, capsys):
    out = tmp_path / "results"

    def refused(*args, **kwargs):     # as a read-only folder (a test running as root bypasses
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out))  # chmod)
    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    assert command.run(bench_args("--out", out)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"fastp2p bench: error: {out}: {os.strerror(errno.EACCES)}; pass --out a "
                   "folder this user can write"), err


def test_a_disk_that_fills_up_during_the_run_is_one_line(tmp_path, monkeypatch, capsys):
    import fastp2p.bench.results_files as results_files
    import fastp2p.bench.suite as suite

    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)

    def write_json(results, out):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def run_suite(settings, on_progress=None):
        on_progress({"partial": True})
    monkeypatch.setattr(results_files, "write_json", write_json)
    monkeypatch.setattr(suite, "run_suite", run_suite)
    out = tmp_path / "results"
    assert command.run(bench_args("--out", out)) == 1
    err = capsys.readouterr().err.strip()
    # the first write failed: no folder to point at, only that nothing was saved
    assert err == (f"fastp2p bench: error: {out}: {os.strerror(errno.ENOSPC)}; nothing was "
                   "saved"), err


@pytest.mark.parametrize("kind", ["file", "fifo", "link-to-a-file"])
def test_out_naming_something_but_a_folder_says_what_it_is(tmp_path, suite_that_must_not_run,
                                                           capsys, kind):
    out, file = tmp_path / "results", tmp_path / "a_file"
    file.write_text("not a folder")
    {"file": lambda: out.write_text("x"), "fifo": lambda: os.mkfifo(out),
     "link-to-a-file": lambda: out.symlink_to(file)}[kind]()
    what = {"file": "a file", "fifo": "a FIFO",
            "link-to-a-file": f"a symbolic link (to {file})"}[kind]
    assert command.run(bench_args("--out", out)) == 2
    assert capsys.readouterr().err.strip() == (
        f"fastp2p bench: error: --out {out} is {what}, not a folder: pass --out a folder (it is "
        "made if missing)")


@pytest.mark.parametrize("kind", ["fifo", "folder", "fifo-after-an-earlier-run"])
def test_a_fifo_or_folder_at_the_results_name_is_refused_before_any_job(
        tmp_path, suite_that_must_not_run, monkeypatch, capsys, kind):
    from fastp2p.bench import environment

    monkeypatch.setattr(environment, "git_commit", lambda checkout: ("abc1234", False))
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    first = tmp_path / f"cpu-{today}-abc1234-quick.json"
    taken = first.with_name(first.stem + "-2.json") if kind.endswith("earlier-run") else first
    if kind.endswith("earlier-run"):
        first.write_text("{}")
    if kind == "folder":
        taken.mkdir()
    else:
        os.mkfifo(taken)
    assert command.run(bench_args("--out", tmp_path)) == 2
    what = "a folder" if kind == "folder" else "a FIFO"
    assert capsys.readouterr().err.strip() == (
        f"fastp2p bench: error: {taken} is {what}, where a results JSON goes: move it away and "
        "run again")


def test_a_table_that_cannot_be_written_names_the_saved_results(tmp_path, monkeypatch, capsys):
    import fastp2p.bench.render as render
    import fastp2p.bench.suite as suite

    results = {"schema": 1, "run_id": "a-run", "mode": "quick", "device_slug": "cpu",
               "complete": True, "training": [],
               "environment": {"device": "cpu", "date_utc": "2026-12-04 10:00",
                               "date": "20261204", "commit": "abc1234", "python": "3.11.9"},
               "config": {"network_description": "unet_64", "steps": 3, "warmup": 1}}

    def markdown(results):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)
    monkeypatch.setattr(suite, "run_suite", lambda settings, on_progress=None: results)
    monkeypatch.setattr(render, "markdown", markdown)
    out = tmp_path / "results"
    assert command.run(bench_args("--out", out)) == 1
    (saved,) = out.glob("*.json")
    assert capsys.readouterr().err.strip() == (
        f"fastp2p bench: error: {out}: {os.strerror(errno.ENOSPC)}; the results are in {saved} "
        "(--plot it for the table and chart)")
