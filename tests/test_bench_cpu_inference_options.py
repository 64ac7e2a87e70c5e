"""benchmarks/bench_cpu_inference.py refuses bad --batch-sizes / --threads while parsing (exit 2)
and --quick runs at an explicit --threads instead of ignoring it."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cpu_inference.py"


def _load_script():
    """The script as `python benchmarks/bench_cpu_inference.py` runs it (the checkout's root need
    not be on the path)."""
    spec = importlib.util.spec_from_file_location("bench_cpu_inference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_cpu_inference = _load_script()


@pytest.fixture
def collected(monkeypatch):
    calls = []

    def fake_collect(quick, **options):
        calls.append((quick, options))
        return [{"cpu": "cpu", "cpu_count": 1, "load_average": [0.0], "torch": "t",
                 "commit": "c", "dirty": False, "bench": "none"}]

    monkeypatch.setattr(bench_cpu_inference, "iter_rows", fake_collect)
    return calls


@pytest.mark.parametrize("argv", [["--batch-sizes", "-1"], ["--batch-sizes", "0"],
                                  ["--batch-sizes", ","], ["--batch-sizes", "two"],
                                  ["--threads", "0"], ["--quick", "--threads", "0"],
                                  ["--threads", "-2"], ["--threads", "many"],
                                  ["--threads", ","]])
def test_bad_sizes_and_thread_counts_are_refused_before_anything_runs(argv, collected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_cpu_inference.main(argv)
    assert exit_info.value.code == 2 and collected == []
    assert "positive integers" in capsys.readouterr().err


def test_quick_honours_an_explicit_thread_count(collected):
    bench_cpu_inference.main(["--quick", "--threads", "1,all", "--batch-sizes", "1,4"])
    bench_cpu_inference.main(["--quick"])
    (quick, given), (_, default) = collected
    assert quick and given["threads"] == "1,all" and given["batch_sizes"] == (1, 4)
    assert default["threads"] is None   # collect's default: the current count when quick


def test_collect_runs_at_the_given_counts_in_quick_mode(monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(bench_cpu_inference, "bench_unet",
                        lambda *args, **kwargs: seen.append(torch.get_num_threads()) or [])
    before = torch.get_num_threads()
    bench_cpu_inference.collect(True, threads="1", layers=False)
    bench_cpu_inference.collect(True, layers=False)
    assert seen == [1, before] and torch.get_num_threads() == before
