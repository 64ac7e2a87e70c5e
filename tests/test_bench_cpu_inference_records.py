"""What the rows of benchmarks/bench_cpu_inference.py record: the commit of the fastp2p they
time (not of the checkout the script lives in), the sample count, quick mode, date and command
line."""
import json
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


def _fake_unet_rows(repeats, **options):
    return [{"bench": "unet", "name": "unet", "median_ms": 1.0}]


def test_quick_honours_an_explicit_repeat_count_and_rows_record_it(monkeypatch):
    seen = []
    monkeypatch.setattr(bench_cpu_inference, "bench_unet",
                        lambda repeats, **options: seen.append(repeats) or
                        _fake_unet_rows(repeats))
    explicit = bench_cpu_inference.collect(True, threads="1", layers=False, unet_repeats=7)
    default = bench_cpu_inference.collect(True, threads="1", layers=False)
    assert seen == [7, 2]
    assert [(row["repeats"], row["quick"]) for row in explicit + default] == [(7, True), (2, True)]
    assert all(len(row["date_utc"]) == len("2026-01-01 00:00:00") for row in explicit + default)


def test_json_rows_record_the_command_line(monkeypatch, tmp_path):
    options = []

    def fake_collect(quick, **given):
        options.append(given)
        return [{**bench_cpu_inference._environment(), "bench": "none"}]

    monkeypatch.setattr(bench_cpu_inference, "iter_rows", fake_collect)
    out = tmp_path / "rows.json"
    bench_cpu_inference.main(["--quick", "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["argv"] == ["bench_cpu_inference.py", "--quick", "--json", str(out)]
    assert options[0]["unet_repeats"] is None   # collect's default for --quick: 2
