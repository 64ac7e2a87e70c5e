"""benchmarks/gpu_check.sh names the commit it runs, run with a stand-in interpreter (no GPU, no
install): its log, the one file beside the results JSON that every stage writes to, starts with
the checkout's commit and the tracked files that differ from it, so the logs, profile and test
results of a GPU window can be committed with the commit they measured (run 1's device copy
held git metadata older than its files, and only the JSON said so)."""
import subprocess

from helpers.gpu_check_runs import run_gpu_check, scratch_checkout

FAKE_PYTHON = """#!/usr/bin/env bash
exit 0
"""


def _git(checkout, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=checkout, check=True, capture_output=True, text=True).stdout


def _committed_checkout(tmp_path):
    checkout = scratch_checkout(tmp_path)
    _git(checkout, "init", "-q")
    _git(checkout, "add", ".")
    _git(checkout, "commit", "-q", "-m", "check")
    return checkout, _git(checkout, "rev-parse", "--short=8", "HEAD").strip()


def _log(tmp_path, checkout):
    run = run_gpu_check(tmp_path, checkout, FAKE_PYTHON, "profile")
    assert run.done.returncode == 0, run.done.stdout + run.done.stderr
    return (run.out / "gpu_check.log").read_text()


def test_the_log_names_the_commit_of_a_clean_checkout(tmp_path):
    checkout, commit = _committed_checkout(tmp_path)
    log = _log(tmp_path, checkout)
    assert f"commit {commit}, no uncommitted changes to tracked files" in log
    assert log.index(f"commit {commit}") < log.index("install")


def test_the_log_names_the_tracked_files_that_differ_from_the_commit(tmp_path):
    checkout, commit = _committed_checkout(tmp_path)
    script = checkout / "benchmarks" / "gpu_check.sh"
    script.write_text(script.read_text() + "\n# an edit not committed\n")
    log = _log(tmp_path, checkout)
    assert f"commit {commit} with uncommitted changes to tracked files:" in log
    assert " M benchmarks/gpu_check.sh" in log


def test_files_git_does_not_track_are_not_changes(tmp_path):
    """The device copy holds files of its own (carried wheels, results): not the commit's."""
    checkout, commit = _committed_checkout(tmp_path)
    (checkout / "a_carried_wheel.whl").write_bytes(b"")
    assert f"commit {commit}, no uncommitted changes to tracked files" in _log(tmp_path,
                                                                              checkout)


def test_a_checkout_inside_another_git_checkout_is_said_unknown(tmp_path):
    """A copy of the files without their .git inside another repository (its parent folder's):
    that repository's commit is not the one the files are."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "another project")
    log = _log(tmp_path, scratch_checkout(tmp_path))
    assert "commit unknown: not the top of a git checkout" in log, log


def test_outside_a_git_checkout_the_commit_is_said_unknown(tmp_path):
    log = _log(tmp_path, scratch_checkout(tmp_path))
    assert "commit unknown: not the top of a git checkout" in log
