"""`fastp2p bench --out` to a folder that cannot be written fails before any job runs, with one
line naming the folder and exit code 2 (it used to crash after the first job); a write that fails
later (a full disk) is one line too, exit code 1."""
import argparse
import errno
import os
import tempfile

import pytest

from fastp2p.bench import command


@pytest.fixture
def suite_that_must_not_run(monkeypatch):
    import fastp2p.bench.suite as suite

    monkeypatch.setattr(command, "settings_from_args", lambda args: None)

    def run_suite(settings, on_progress=None):
        raise AssertionError("a job ran although --out cannot be written")
    monkeypatch.setattr(suite, "run_suite", run_suite)


def bench_args(out):
    return argparse.Namespace(list_peers=False, plot=None, out=out)


def test_an_out_path_under_a_file_fails_before_any_job(tmp_path, suite_that_must_not_run,
                                                        capsys):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "results"
    assert command.run(bench_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("fastp2p bench: error: ") and str(out) in err, err


def test_a_folder_that_refuses_files_fails_before_any_job(tmp_path, suite_that_must_not_run,
                                                          monkeypatch, capsys):
    out = tmp_path / "results"

    def refused(*args, **kwargs):     # as a read-only folder (a test running as root bypasses
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out))  # chmod)
    monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    assert command.run(bench_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"fastp2p bench: error: {out}: {os.strerror(errno.EACCES)}; pass --out a "
                   "folder this user can write"), err


def test_a_disk_that_fills_up_during_the_run_is_one_line(tmp_path, monkeypatch, capsys):
    import fastp2p.bench.report as report
    import fastp2p.bench.suite as suite

    monkeypatch.setattr(command, "settings_from_args", lambda args: None)

    def write_json(results, out):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def run_suite(settings, on_progress=None):
        on_progress({"partial": True})
    monkeypatch.setattr(report, "write_json", write_json)
    monkeypatch.setattr(suite, "run_suite", run_suite)
    out = tmp_path / "results"
    assert command.run(bench_args(out)) == 1
    err = capsys.readouterr().err.strip()
    # the first write failed: no folder to point at, only that nothing was saved
    assert err == (f"fastp2p bench: error: {out}: {os.strerror(errno.ENOSPC)}; nothing was "
                   "saved"), err
