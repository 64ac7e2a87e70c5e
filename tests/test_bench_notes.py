"""What a run was asked for and will not do is said, on stderr and in the report: a requested
section with no job vanished from the results without a word, --quick dropped the
torch.compile inference variants of the compile peers it was given as silently, and so were
options for sections the run leaves out (--micro with --sections training)."""
import io
from pathlib import Path

import pytest

from fastp2p.bench import environment, render, suite
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.peer_specs import peer_by_name
from fastp2p.bench.runner import Log
from helpers.bench_helpers import quick_settings


@pytest.fixture
def planned_only(monkeypatch):
    """run_suite without measuring: no ceilings, and a time budget spent before the first job
    (every job becomes a skipped row), so a test sees the plan in a second."""
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})

    def settings(**changes):
        return suite.SuiteSettings(**{
            "quick": True, "device": "cpu", "sections": ("training",), "config": QUICK_CONFIG,
            "batch_sizes": (1,), "steps": 1, "warmup": 0,
            "peers": (peer_by_name("reference"),), "job_time_limit": None,
            "time_budget": 1e-9, "benchmarks_dir": None, "inference_rep_ms": 1.0,
            **changes})
    return settings


def _run(settings, capsys):
    results = suite.run_suite(settings, log=Log(io.StringIO()))  # notes go to stderr anyway
    return results, capsys.readouterr().err


def test_a_section_with_nothing_to_run_is_said_on_stderr_and_in_the_table(tmp_path, capsys,
                                                                          planned_only):
    empty = tmp_path / "benchmarks"
    empty.mkdir()
    results, err = _run(planned_only(sections=("training", "micro"), benchmarks_dir=empty),
                        capsys)
    note = f"micro: nothing to run (no bench_*.py modules in {empty})"
    assert results["notes"] == [note]
    assert f"fastp2p bench: note: {note}" in err
    assert f"- {note}" in render.markdown(results)


def test_without_a_benchmarks_folder_the_note_says_how_to_give_one(capsys, planned_only):
    results, _ = _run(planned_only(sections=("micro",)), capsys)
    (note,) = results["notes"]
    assert note.startswith("micro: nothing to run (no benchmarks/ folder") and (
        "--benchmarks-dir" in note)


def test_quick_names_the_compile_inference_variants_it_leaves_out(capsys, planned_only):
    peers = (peer_by_name("reference"), peer_by_name("compile-default"))
    results, err = _run(planned_only(sections=("inference",), peers=peers), capsys)
    note = ("inference: torch.compile of the reference, mode default, not run: --quick times "
            "the eager variants only")
    assert results["notes"] == [note]
    assert note in err and note in render.markdown(results)
    assert {row["module"] for row in results["inference"]} == {
        "reference", "fastp2p", "fastp2p unfolded"}


def test_a_cpu_run_names_the_reduce_overhead_variant_it_leaves_out(capsys, planned_only):
    peers = tuple(map(peer_by_name, ("compile-default", "compile-reduce-overhead")))
    results, _ = _run(planned_only(quick=False, sections=("inference",), peers=peers), capsys)
    assert results["notes"] == ["inference: torch.compile of the reference, mode "
                                "reduce-overhead, not run: its CUDA graphs need a GPU"]
    assert "reference compile" in {row["module"] for row in results["inference"]}


def test_a_run_that_runs_everything_it_was_asked_has_no_notes(capsys, planned_only):
    results, err = _run(planned_only(), capsys)
    assert results["notes"] == [] and "note:" not in err
    assert "Not run" not in render.markdown(results)


CHECKOUT = Path(__file__).resolve().parents[1]


def test_options_for_sections_left_out_are_named():
    settings = quick_settings("--sections", "inference", "--micro", "bench_losses",
                         "--benchmarks-dir", str(CHECKOUT / "benchmarks"), "--processes", "2",
                         "--steps", "4")
    _, notes = suite.plan_jobs(settings)
    assert notes == ["--steps: not used, as --sections leaves out training and end-to-end",
                     "--processes: not used, as --sections leaves out end-to-end",
                     "--benchmarks-dir: not used, as --sections leaves out micro",
                     "--micro: not used, as --sections leaves out micro"]


def test_options_a_section_of_the_run_reads_are_no_note():
    settings = quick_settings("--sections", "training,micro", "--micro", "bench_losses",
                         "--benchmarks-dir", str(CHECKOUT / "benchmarks"), "--steps", "4",
                         "--peers", "reference")
    assert suite.plan_jobs(settings)[1] == []


def test_micro_modules_without_a_benchmarks_folder_say_how_to_give_one(monkeypatch):
    monkeypatch.setattr(environment, "package_checkout", lambda: None)  # an installed wheel
    with pytest.raises(ValueError) as refused:
        quick_settings("--sections", "micro", "--micro", "bench_losses")
    assert str(refused.value) == ("--micro bench_losses: no benchmarks folder to find them in: "
                                  "fastp2p is not imported from a source checkout; pass "
                                  "--benchmarks-dir")


@pytest.mark.parametrize("argv", [
    ("--micro", "bench_losses"),  # no folder: fastp2p is not imported from a checkout
    ("--micro", "bench_nonexistent", "--benchmarks-dir", str(CHECKOUT / "benchmarks")),
    ("--benchmarks-dir", str(CHECKOUT / "no-such-folder")),
], ids=["no-folder", "unknown-module", "folder-missing"])
def test_micro_options_without_the_micro_section_are_noted_not_refused(monkeypatch, argv):
    """--micro (and --benchmarks-dir) are checked against the folder only when the micro
    section runs: with --sections training they exited 2, unlike any other option for a
    section left out, which is named in the notes."""
    monkeypatch.setattr(environment, "package_checkout", lambda: None)  # an installed wheel
    # named peers: the notes are the options' only (no note of default peers left out)
    settings = quick_settings("--sections", "training", "--peers", "reference", *argv)
    notes = suite.plan_jobs(settings)[1]
    assert [note.split(":")[0] for note in notes] == [
        option for option in ("--benchmarks-dir", "--micro") if option in argv]
    assert all(note.endswith("not used, as --sections leaves out micro") for note in notes)
