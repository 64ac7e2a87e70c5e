"""`fastp2p bench` under torchrun ran the whole suite in every process: competing timings, one
result set per process, exit 0. It is refused in one line, as `fastp2p test` is, pointing to
--processes (the end-to-end section's own processes), before anything is written."""
from fastp2p.cli import main
from helpers.train_helpers import one_line


def test_under_torchrun_bench_is_refused_in_one_line_before_writing(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "results"
    assert main(["bench", "--quick", "--sections", "training", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert one_line(captured.err) == (
        "fastp2p bench: error: fastp2p bench runs in one process, but torchrun started 2 "
        "(WORLD_SIZE=2), each of which would run the whole benchmark; run it without torchrun "
        "(--processes N times `fastp2p train` at N processes, which it spawns itself)")
    assert captured.out == "" and not out.exists()
