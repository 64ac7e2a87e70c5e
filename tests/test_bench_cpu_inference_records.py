"""What the rows of benchmarks/bench_cpu_inference.py record: the commit of the fastp2p they
time (not of the checkout the script lives in)."""
import subprocess

import fastp2p
from helpers.benchmark_scripts import load_benchmark_script

bench_cpu_inference = load_benchmark_script("bench_cpu_inference")


def _git(folder, *args):
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True,
                          text=True).stdout.strip()


def _checkout_with_one_commit(folder):
    """A folder that looks like a fastp2p checkout (benchmarks/ and fastp2p/), committed."""
    (folder / "benchmarks").mkdir(parents=True)
    (folder / "benchmarks" / "__init__.py").write_text("")
    (folder / "fastp2p").mkdir()
    (folder / "fastp2p" / "__init__.py").write_text("")
    _git(folder, "init", "-q")
    _git(folder, "add", ".")
    _git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return _git(folder, "rev-parse", "--short=8", "HEAD")


def test_the_commit_recorded_is_the_imported_packages(tmp_path, monkeypatch):
    commit = _checkout_with_one_commit(tmp_path)
    monkeypatch.setattr(fastp2p, "__file__", str(tmp_path / "fastp2p" / "__init__.py"))
    environment = bench_cpu_inference._environment()
    assert (environment["commit"], environment["dirty"]) == (commit, False)
    assert "fastp2p_file" not in environment


def test_an_installed_package_records_unknown_and_where_it_lives(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "fastp2p" / "__init__.py"
    monkeypatch.setattr(fastp2p, "__file__", str(installed))
    environment = bench_cpu_inference._environment()
    assert environment["commit"] == "unknown" and environment["dirty"] is None
    assert environment["fastp2p_file"] == str(installed)
