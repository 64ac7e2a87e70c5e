"""benchmarks/bench_cpu_inference.py --json refuses an existing file unless --overwrite, and
Ctrl-C keeps the rows measured so far (marked complete: false) and exits 130 with one line."""
import json

import pytest

from helpers.benchmark_scripts import load_benchmark_script

bench_cpu_inference = load_benchmark_script("bench_cpu_inference")


def _unet_rows(repeats, *, train, **options):
    """One row for eval mode; train mode stands for a run stopped by Ctrl-C."""
    if train:
        raise KeyboardInterrupt
    return [{"bench": "unet", "name": "unet eval", "model": "reference", "layout": "nchw",
             "mode": "eval", "batch_size": 1, "median_ms": 1.0, "min_ms": 1.0,
             "speedup_vs_reference_nchw": 1.0, "speedup_vs_reference_channels_last": 1.0,
             "speedup_of_min_vs_reference_nchw": 1.0}]


def test_an_existing_json_file_is_refused_unless_overwrite_is_given(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr(bench_cpu_inference, "bench_unet", _unet_rows)
    out = tmp_path / "rows.json"
    out.write_text("earlier results")
    argv = ["--quick", "--threads", "1", "--no-layers", "--json", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        bench_cpu_inference.main(argv)
    assert exit_info.value.code == 2 and out.read_text() == "earlier results"
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert bench_cpu_inference.main([*argv, "--overwrite"]) == 0
    assert [row["complete"] for row in json.loads(out.read_text())] == [True]


def test_ctrl_c_writes_the_rows_so_far_marked_incomplete_and_exits_130(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(bench_cpu_inference, "bench_unet", _unet_rows)
    out = tmp_path / "rows.json"
    try:
        code = bench_cpu_inference.main(["--quick", "--threads", "1", "--no-layers",
                                         "--modes", "eval,train", "--json", str(out)])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped main() as a traceback")
    (row,) = json.loads(out.read_text())
    assert code == 130 and row["name"] == "unet eval" and row["complete"] is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted: 1 row(s) measured")


def test_ctrl_c_before_any_row_writes_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_cpu_inference, "bench_unet", _unet_rows)
    out = tmp_path / "rows.json"
    code = bench_cpu_inference.main(["--quick", "--threads", "1", "--no-layers",
                                     "--modes", "train", "--json", str(out)])
    assert code == 130 and not out.exists()
    assert capsys.readouterr().err == "interrupted: 0 row(s) measured\n"
