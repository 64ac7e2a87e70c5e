"""`fastp2p bench` never replaces another run's results: a second run of the same day, commit
and mode writes beside the first (-2, -3, ...), progress writes replace only the run's own file,
and the results of an older version (no run_id) or a table left on its own are kept."""
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastp2p.bench.results_files import stem_for
from helpers.bench_helpers import bench_args
from helpers.train_helpers import folder_files


def _bench_results(run_id, batch_size):
    env = {"device": "cpu", "date": "20261202", "date_utc": "2026-12-02 07:00:00",
           "commit": "unknown", "commit_dirty": None, "torch": "2.13.0", "python": "3.12"}
    row = {"peer": "reference", "precision": "fp32", "channels_last": False,
           "batch_size": batch_size, "status": "failed", "error": "x"}
    return {"schema": 1, "run_id": run_id, "mode": "quick", "device_slug": "cpu",
            "environment": env, "training": [row], "inference": [], "micro": [],
            "config": {"network_description": "64x64", "steps": 3, "warmup": 1}}


def test_a_second_bench_run_of_the_day_writes_beside_the_first(tmp_path, monkeypatch, capsys):
    import fastp2p.bench.command as command
    import fastp2p.bench.suite as suite

    # what command.run reads of the settings before the patched run_suite: the results' name
    monkeypatch.setattr(command, "settings_from_args",
                        lambda args: SimpleNamespace(device="cpu", quick=True))
    args = bench_args("--out", tmp_path)
    written = []
    for run_id, batch_size in (("run-a", 1), ("run-b", 2), ("run-c", 3)):
        def run_suite(settings, on_progress=None, run_id=run_id, batch_size=batch_size):
            for _ in range(2):   # progress writes replace the run's own file
                on_progress({**_bench_results(run_id, batch_size), "complete": False})
            return _bench_results(run_id, batch_size)
        monkeypatch.setattr(suite, "run_suite", run_suite)
        command.run(args)
        out = capsys.readouterr().out
        written.append(Path(re.search(r"wrote json: (.+)", out).group(1)))
    assert [path.name for path in written] == [
        "cpu-20261202-unknown-quick.json", "cpu-20261202-unknown-quick-2.json",
        "cpu-20261202-unknown-quick-3.json"]
    for path, batch_size in zip(written, (1, 2, 3)):
        assert json.loads(path.read_text())["training"][0]["batch_size"] == batch_size
        assert f"| reference | fp32 | {batch_size} |" in path.with_suffix(".md").read_text()
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_results_of_an_older_version_or_a_table_alone_are_not_replaced(tmp_path):
    from fastp2p.bench import results_files

    old = tmp_path / "cpu-20261202-unknown-quick.json"
    old.write_text(json.dumps({k: v for k, v in _bench_results(None, 1).items()
                               if k != "run_id"}))
    (tmp_path / "cpu-20261202-unknown-quick-2.md").write_text("a table kept on its own")
    before = folder_files(tmp_path)
    path = results_files.write_json(_bench_results("new", 2), tmp_path)
    assert path.name == "cpu-20261202-unknown-quick-3.json"
    assert all(folder_files(tmp_path)[name] == data for name, data in before.items())
    assert results_files.write_json(_bench_results("new", 4), tmp_path) == path   # its own file
    assert json.loads(path.read_text())["training"][0]["batch_size"] == 4


def test_results_without_a_commit_are_named_after_the_build(tmp_path):
    """An installed fastp2p (no git) named every run's files after commit "unknown", though
    its results record the build fingerprint; a checkout's keep its commit."""
    from fastp2p.bench import results_files

    installed = _bench_results("installed", 1)
    installed["environment"]["build"] = "0123456789ab"
    assert results_files.write_json(installed, tmp_path).name == (
        "cpu-20261202-build-0123456789ab-quick.json")
    checkout = _bench_results("checkout", 1)
    checkout["environment"].update(commit="06a0828a", build="0123456789ab")
    assert results_files.write_json(checkout, tmp_path).name == "cpu-20261202-06a0828a-quick.json"


def test_the_name_checked_before_the_jobs_is_the_builds_without_a_commit(tmp_path,
                                                                          monkeypatch):
    from fastp2p.bench import command, environment
    from fastp2p.build_fingerprint import build_fingerprint

    monkeypatch.setattr(environment, "git_commit", lambda checkout: ("unknown", None))
    monkeypatch.setattr(environment, "file_date", lambda: "20261202")
    (tmp_path / f"cpu-20261202-build-{build_fingerprint()}-quick.json").mkdir()
    error = command.prepare_out_dir(tmp_path, SimpleNamespace(device="cpu", quick=True))
    assert error is not None and f"build-{build_fingerprint()}-quick.json is a folder" in error


README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not README.is_file(), reason="needs the source checkout")
def test_the_readme_names_the_results_files_as_they_are_named():
    """It gave `<device>-<YYYYMMDD>-<commit>` alone: a --quick run's names end in -quick, and
    a second run's of the same name in -2 (QA)."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    named = text[text.index("Results go to `--out DIR`"):]
    named = named[:named.index("by default")]
    stem = "<device>-<YYYYMMDD>-<commit>"
    quick = stem_for("<device>", "<YYYYMMDD>", "<commit>", None, quick=True)[len(stem):]
    assert f"`{stem}`" in named and f"`{quick}` for a `--quick` run" in named, named
    assert "`-2`, `-3`" in named, named
