"""A micro-benchmark module that calls sys.exit or pytest.importorskip, or returns a row with a
bad field, fails as that module's job, in one line naming it (and the field), and the rest of
the run is saved: the sys.exit, or the skip (a BaseException), ended the whole bench, and a bad
field (p20_ms as text) stopped the save with a traceback, no table written."""
import argparse
import json

import pytest

from fastp2p.bench import command, micro, suite
from fastp2p.bench.runner import Job, Runner
from helpers.bench_helpers import micro_folder

FINE = 'def collect(quick):\n    return [{"name": "fine", "median_ms": 1.0, "bytes": 1000}]\n'


def _run(folder):
    runner = Runner(log=lambda message: None)
    rows = []
    for job in micro.micro_jobs(folder, quick=True, device="cpu"):
        rows += runner.run(job)
    return {row["module"]: row for row in rows}


def test_a_module_calling_sys_exit_is_that_modules_failure_and_the_run_goes_on(tmp_path):
    folder = micro_folder(tmp_path, a_exits="import sys\n\ndef collect(quick):\n    sys.exit(2)\n",
                      b_fine=FINE)
    rows = _run(folder)
    assert rows["bench_a_exits"]["status"] == "failed"
    assert rows["bench_a_exits"]["error"] == "SystemExit: the job called sys.exit(2)"
    assert rows["bench_b_fine"]["status"] == "ok"


@pytest.mark.parametrize("source", [
    'import pytest\npytest.importorskip("fastp2p_no_such_package")\n',
    'class Abort(BaseException):\n    pass\n\ndef collect(quick):\n    raise Abort("gave up")\n'],
    ids=["importorskip-at-import", "base-exception-in-collect"])
def test_a_module_raising_a_base_exception_is_that_modules_failure(tmp_path, source):
    # pytest's Skipped is a BaseException, not an Exception: it ended the whole run
    try:
        rows = _run(micro_folder(tmp_path, a_skips=source, b_fine=FINE))
    except BaseException as error:  # noqa: BLE001 - Skipped would skip this test instead
        pytest.fail(f"the job's {type(error).__name__} ended the run")
    assert rows["bench_a_skips"]["status"] == "failed"
    assert rows["bench_a_skips"]["error"].split(":")[0] in ("Skipped", "Abort")
    assert rows["bench_b_fine"]["status"] == "ok"


def test_a_stop_inside_a_job_still_ends_the_run():
    def stopped():
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        Runner(log=lambda message: None).run(Job("micro", "bench_x", stopped))


def _collecting(fields: str) -> str:
    """A module whose collect() returns one row: name, median_ms, then ``fields`` (source)."""
    return f'def collect(quick):\n    return [{{"name": "case", "median_ms": 1.0, {fields}}}]\n'


BAD_ROWS = {  # the row's extra fields, as source: what the error names
    "p20-as-text": ('"p20_ms": "0.9"', "'p20_ms' must be a finite number >= 0, got '0.9'"),
    "infinite-gbps": ('"gbps": float("inf")', "'gbps' must be a finite number >= 0, got inf"),
    "bytes-as-text": ('"bytes": "4 KiB"', "'bytes' must be a finite number >= 0"),
    "bool-median": ('"median_ms": True', "'median_ms' must be a positive finite number"),
    "empty-name": ('"name": ""', "'name' must be a non-empty str"),
    "gpu-device": ('"device": "cuda:0"', "'device' must be \"cuda\" or \"cpu\""),
    "harness-status": ('"status": "great"', "'status' is the harness's own field"),
    "nan-extra": ('"flops": float("nan")', "'flops' is not JSON"),
    "object-extra": ('"dtype": object()', "'dtype' is not JSON"),
    # json.dumps refused the tuple only at the save: a TypeError, no table written
    "tuple-key": ('("a", "b"): 1', "a field name must be a str, got ('a', 'b')"),
    # math.isfinite raised a bare OverflowError naming no module, row or field
    "int-past-float": ('"bytes": 10**400', "'bytes' must be a finite number >= 0, got 1000"),
    "deep-extra": ('"extra": __import__("functools").reduce(lambda v, _: [v], range(10**5), [])',
                   "'extra' is nested too deeply to save: [[[[[[[...]]]]]]]"),
    # the derived gbps and copy_fraction were inf, saved as "Infinity"
    "infinite-gbps-from-bytes": ('"median_ms": 1e-300, "bytes": 10**300',
                                 "'gbps' comes out as inf from bytes 1000"),
}


@pytest.mark.parametrize("fields, message", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_field_fails_the_module_naming_row_and_field(tmp_path, fields, message):
    row = _run(micro_folder(tmp_path, bad=_collecting(fields)))["bench_bad"]
    assert row["status"] == "failed"
    assert row["error"].startswith("ValueError: bench_bad.collect() row 0: "), row["error"]
    assert message in row["error"] and "\n" not in row["error"]


def test_a_good_row_keeps_its_fields_and_gets_bandwidth(tmp_path):
    fields = '"bytes": 4e6, "p20_ms": None, "shape": [1, 8, 4, 4], "op": "norm_act"'
    row = _run(micro_folder(tmp_path, good=_collecting(fields)))["bench_good"]
    assert row["status"] == "ok" and row["gbps"] == pytest.approx(4.0)
    assert row["copy_fraction"] > 0 and row["shape"] == [1, 8, 4, 4] and row["device"] == "cpu"


def test_the_run_saves_the_other_modules_and_names_the_bad_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(suite, "measure_ceilings", lambda device, log: {})
    folder = micro_folder(
        tmp_path, b_fine=FINE,
        x_text='def collect(quick):\n    return [{"name": "x", "median_ms": 1.0, '
               '"p20_ms": "0.9"}]\n',
        y_inf='def collect(quick):\n    return [{"name": "y", "median_ms": 1.0, '
              '"gbps": float("inf")}]\n',
        z_exits="import sys\nsys.exit(3)\n")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args(["--quick", "--sections", "micro", "--benchmarks-dir", str(folder),
                              "--out", str(out)])
    assert command.run(args) == 1
    err = capsys.readouterr().err
    assert "3 job(s) failed" in err and "Traceback" not in err, err
    assert "bench_x_text.collect() row 0: 'p20_ms'" in err
    assert "bench_y_inf.collect() row 0: 'gbps'" in err
    assert "SystemExit: the job called sys.exit(3)" in err
    (saved,) = out.glob("*.json")
    rows = {row["module"]: row for row in json.loads(saved.read_text())["micro"]}
    assert rows["bench_b_fine"]["status"] == "ok" and rows["bench_b_fine"]["gbps"] > 0
    assert "fine" in saved.with_suffix(".md").read_text()
