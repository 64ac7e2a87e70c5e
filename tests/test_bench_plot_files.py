"""The results files of `fastp2p bench`, and `--plot FILE.json`: what sits at their names and what
the file holds fail in one line naming it, never a traceback or a hang.

A folder at the .md/.png name, an end-to-end row without a stage's time per call (optional: a
stage without calls has none) and per-rank figures that are not numbers each ended in a
traceback; a run without training drew an empty "batch 0" chart; a FIFO at the results JSON's
name blocked the run for ever when it went to read the run id there."""
import argparse
import copy
import json
import os
import re
from types import SimpleNamespace

import pytest

from fastp2p.bench import command, render, results_files, suite
from fastp2p.bench.timing import time_limit
from fastp2p.cli import main

# what command.run reads of the settings before the patched run_suite: the results' name
QUICK_CPU = SimpleNamespace(device="cpu", quick=True)

OK = {"status": "ok", "images_per_s": 10.0, "images_per_s_p20": 9.0, "images_per_s_p80": 11.0}
STAGES = ("data", "log", "sample", "checkpoint")
RESULTS = {
    "schema": 1, "run_id": "this-run", "mode": "quick", "device_slug": "cpu",
    "environment": {"device": "cpu", "date_utc": "2026-12-04 10:00", "date": "20261204",
                    "commit": "abc1234", "python": "3.11.9", "torch": "2.13.0"},
    "config": {"network_description": "unet_64 ngf 8", "steps": 3, "warmup": 1},
    "training": [{"peer": "fastp2p", "batch_size": 1, **OK, "step_ms": 100.0}],
    "inference": [], "micro": [],
    "end_to_end": [{"batch_size": 1, "processes": 2, "device": "cpu", "precision": "fp32",
                    **OK, "per_rank_images_per_s": [5.0, 5.0],
                    **{f"{stage}_{figure}": 1 for stage in STAGES
                       for figure in ("share", "ms_per_call", "calls")}}],
}


def _saved(tmp_path, results=RESULTS):
    path = tmp_path / "cpu-20261204-abc1234-quick.json"
    path.write_text(json.dumps(results))
    return path


def _plot_error(path, capsys):
    assert main(["bench", "--plot", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fastp2p bench: error: "), err
    return err


@pytest.mark.parametrize("suffix", [".md", ".png"])
def test_a_folder_at_the_table_or_chart_name_is_one_line_naming_it(tmp_path, capsys, suffix):
    path = _saved(tmp_path)
    path.with_suffix(suffix).mkdir()
    err = _plot_error(path, capsys)
    assert f"{path.with_suffix(suffix)} is a folder, where the {suffix[1:]} beside" in err
    assert path.with_suffix(suffix).is_dir()
    assert not path.with_suffix(".md").is_file()  # refused before anything was written


def test_an_end_to_end_row_without_a_stage_time_per_call_renders(tmp_path, capsys):
    results = copy.deepcopy(RESULTS)
    del results["end_to_end"][0]["checkpoint_ms_per_call"]
    assert main(["bench", "--plot", str(_saved(tmp_path, results))]) == 0
    table = (tmp_path / "cpu-20261204-abc1234-quick.md").read_text()
    assert "100.0% (– ms × 1)" in table  # the checkpoint stage: share, no time per call


def test_per_rank_figures_that_are_not_numbers_are_one_line_naming_the_field(tmp_path, capsys):
    results = copy.deepcopy(RESULTS)
    results["end_to_end"][0]["per_rank_images_per_s"] = ["5 images/s", "5 images/s"]
    path = _saved(tmp_path, results)
    err = _plot_error(path, capsys)
    assert str(path) in err
    assert "end_to_end[0]['per_rank_images_per_s'] is not a list of numbers" in err


def test_results_without_training_get_a_table_and_no_chart(tmp_path, capsys):
    results = {**RESULTS, "training": []}
    files = render.render_files(_saved(tmp_path, results))
    assert files["chart"] is None and not (tmp_path / "cpu-20261204-abc1234-quick.png").exists()
    assert "End to end" in files["markdown"].read_text()
    assert "no chart: the results hold no training rows" in capsys.readouterr().out


def test_a_fifo_at_the_results_name_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "cpu-20261204-abc1234-quick.json"
    os.mkfifo(fifo)
    with time_limit(10), pytest.raises(ValueError, match="is a FIFO, where a results JSON go"):
        results_files.write_json(RESULTS, tmp_path)


def test_a_fifo_put_at_the_results_name_during_the_run_stops_it_in_one_line(
        tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "cpu-20261204-abc1234-quick.json"

    def run_suite(settings, on_progress=None):
        os.mkfifo(fifo)         # after the check before the first job
        on_progress(RESULTS)    # the first job's results
        raise AssertionError("the run went on past a write it could not make")
    monkeypatch.setattr(command, "settings_from_args", lambda args: QUICK_CPU)
    monkeypatch.setattr(suite, "run_suite", run_suite)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    with time_limit(10):
        assert command.run(parser.parse_args(["--out", str(tmp_path)])) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err == (f"fastp2p bench: error: {fifo} is a FIFO, where a results JSON goes: move "
                   "it away and run again; nothing was saved"), err


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_plotting_a_fifo_or_folder_says_what_it_is(tmp_path, capsys, kind):
    path = tmp_path / "cpu-20261204-abc1234-quick.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with time_limit(10):    # a FIFO's read would block for ever
        err = _plot_error(path, capsys)
    what = "a FIFO" if kind == "fifo" else "a folder"
    assert err.startswith(f"fastp2p bench: error: {path} is {what}, not a results file"), err


@pytest.mark.parametrize("name", [" ", "run.json "], ids=["blank", "trailing-blank"])
def test_a_results_path_with_blanks_at_its_ends_is_shown_in_quotes(tmp_path, capsys, name,
                                                                    monkeypatch):
    """``--plot " "`` was said as "results file   not found": the path did not show."""
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--plot", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastp2p bench: error: results file {name!r} not found"), err


def test_results_without_training_mind_no_folder_at_the_chart_name(tmp_path, capsys):
    path = _saved(tmp_path, {**RESULTS, "training": []})
    path.with_suffix(".png").mkdir()    # no chart is written: nothing to refuse
    assert main(["bench", "--plot", str(path)]) == 0
    assert path.with_suffix(".md").is_file() and path.with_suffix(".png").is_dir()
    assert f"no chart: the results hold no training rows; {path.with_suffix('.png')} (a " \
           "folder) is left as it is" in capsys.readouterr().out


def test_results_without_training_remove_an_older_chart_and_say_so(tmp_path, capsys):
    path = _saved(tmp_path, {**RESULTS, "training": []})
    path.with_suffix(".png").write_bytes(b"an older chart, of training rows no longer here")
    assert main(["bench", "--plot", str(path)]) == 0
    assert not path.with_suffix(".png").exists()
    assert ("no chart: the results hold no training rows; removed the older "
            f"{path.with_suffix('.png')} beside them") in capsys.readouterr().out


def test_null_notes_are_no_notes_as_other_optional_fields_null_are(tmp_path, capsys):
    path = _saved(tmp_path, {**RESULTS, "notes": None, "ceilings": None, "peers": None})
    assert main(["bench", "--plot", str(path)]) == 0
    assert "Not run" not in path.with_suffix(".md").read_text()


def test_a_pipe_or_line_break_in_a_cell_stays_in_its_cell():
    # a micro-benchmark's "a|b\nc" ended its cell and its row: the table's columns shifted
    results = {**RESULTS, "notes": ["two\nlines"], "micro": [
        {"module": "bench_pipe", "status": "ok", "name": "a|b\nc", "shape": "x|y",
         "median_ms": 1.0},
        {"module": "bench_bad", "status": "failed", "error": "ValueError: a|b\nc"}]}
    table = render.markdown(results)
    rows = [line for line in table.splitlines() if line.startswith("| bench_")]
    assert len(rows) == 2
    assert [len(re.split(r"(?<!\\)\|", row)) for row in rows] == [8, 8]  # 6 cells and 2 ends
    assert "| a\\|b c x\\|y |" in rows[0] and "| failed: ValueError: a\\|b c |" in rows[1]
    assert "- two lines" in table
