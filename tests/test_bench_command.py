"""`fastp2p bench`: runs on the package's own dependencies, exits non-zero when a job failed,
and writes outside the source tree unless --out says otherwise."""
import argparse
import subprocess
import sys
from types import SimpleNamespace
from pathlib import Path

import pytest

from fastp2p.bench import command
from helpers.bench_helpers import bench_args

# what command.run reads of the settings before the patched run_suite: the results' name
QUICK_CPU = SimpleNamespace(device="cpu", quick=True)

CHECKOUT = Path(__file__).resolve().parents[1]


def test_micro_benchmark_modules_import_without_pytest():
    """What `pip install .` gives (no test extra): every bench_*.py the suite imports must load."""
    script = ("import sys; sys.modules['pytest'] = None; sys.modules['pytest_benchmark'] = None\n"
              "from fastp2p.bench.micro import discover, import_benchmark_module\n"
              f"paths = discover({str(CHECKOUT / 'benchmarks')!r})\n"
              "assert paths\n"
              "for path in paths:\n"
              "    assert callable(import_benchmark_module(path).collect), path\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=CHECKOUT.parent)
    assert result.returncode == 0, result.stderr[-3000:]


def test_default_results_folder_is_outside_the_checkout(tmp_path):
    inside = command.default_out_dir(CHECKOUT)
    assert not inside.resolve().is_relative_to(CHECKOUT) and inside.is_dir()
    inside.rmdir()
    assert command.default_out_dir(tmp_path) == tmp_path / "fastp2p-bench-results"


def _results(*statuses):
    return {"training": [{"peer": "reference", "batch_size": 1, "status": statuses[0],
                          "error": "RuntimeError: boom"}],
            "inference": [], "micro": [{"module": "bench_losses", "status": status,
                                        "error": "ModuleNotFoundError: No module named 'x'"}
                                       for status in statuses[1:]]}


def test_failed_jobs_are_listed():
    assert command.failed_jobs(_results("ok", "ok", "skipped")) == []
    assert command.failed_jobs(_results("failed", "failed")) == [
        "training (peer reference, batch_size 1): RuntimeError: boom",
        "micro (module bench_losses): ModuleNotFoundError: No module named 'x'"]


def test_a_failed_job_makes_the_exit_code_1(tmp_path, monkeypatch, capsys):
    import fastp2p.bench.render as render
    import fastp2p.bench.results_files as results_files
    import fastp2p.bench.suite as suite

    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)
    table = tmp_path / "out" / "table.md"
    monkeypatch.setattr(results_files, "write_json",
                        lambda results, out: table.with_suffix(".json"))

    def render_files(json_path):
        table.write_text("| table |\n")
        return {"markdown": table, "chart": None}

    monkeypatch.setattr(render, "render_files", render_files)
    args = bench_args("--out", tmp_path / "out")
    for statuses, code in ((("ok", "ok"), 0), (("ok", "failed"), 1)):
        monkeypatch.setattr(suite, "run_suite", lambda settings, on_progress=None,
                            statuses=statuses: _results(*statuses))
        assert command.run(args) == code
    err = capsys.readouterr().err
    assert "fastp2p bench: 1 job(s) failed:" in err and "micro (module bench_losses)" in err


@pytest.mark.parametrize("text", ["1,,2", "1,2,", ",1", "1,0", "x"])
def test_a_size_list_with_a_gap_or_a_non_positive_entry_is_refused(text):
    """A doubled comma was read as 1,2 before: a typo for a missing size ran fewer jobs."""
    with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
        command._positive_ints(text)
    assert command._positive_ints(" 4, 1,4") == (4, 1)


def test_list_peers_lines_the_descriptions_up_past_the_longest_name(capsys):
    """The name column was 26 characters wide: fastp2p-split-conv-backward (27) pushed its
    description one column right of the others'."""
    from fastp2p.bench import peer_specs

    assert command.list_peers() == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(peer_specs.PEERS)
    starts = {line.index(peer.description) for line, peer in zip(lines, peer_specs.PEERS)}
    longest = max(len(peer.name) for peer in peer_specs.PEERS)
    assert len(starts) == 1 and starts.pop() > longest, lines


@pytest.mark.parametrize("mode", [["--list-peers"], ["--plot", "RUN.json"]])
@pytest.mark.parametrize("options, named", [
    (["--sections", "training", "--steps", "5"], "--sections, --steps"),
    (["--quick", "--device", "cuda"], "--quick, --device"), (["--steps", "3"], "--steps"),
    (["--device", "auto"], "--device")])   # at its default: typed all the same
def test_list_peers_and_plot_refuse_the_options_they_would_ignore(tmp_path, capsys, mode,
                                                                  options, named):
    """--list-peers and --plot run no benchmark: the other options were ignored without a
    word, values every other run refuses too."""
    (tmp_path / "RUN.json").write_text("{}")
    args = bench_args(*[str(tmp_path / word) if word == "RUN.json" else word for word in mode],
                      *options)
    assert command.run(args) == 2
    assert capsys.readouterr().err == (f"fastp2p bench: error: {mode[0]} runs no benchmark, so "
                                       f"{named} would do nothing: drop "
                                       f"{'them' if ',' in named else 'it'}\n")
