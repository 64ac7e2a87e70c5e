"""`fastp2p test` writes its scores to RESULTS_DIR/NAME/PHASE_EPOCH/scores.json beside
index.html (QA, a sweep: the scores were only printed, so a collector had to scrape the `model
(fake_B) ...` lines), and a run that fails leaves no earlier run's file as its own."""
import errno
import json
import os
import re

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, tiny_test_results


def _printed_l1(out: str) -> dict:
    """{"model" | "constant" | "identity": the L1 printed} of a `fastp2p test` report."""
    return {name: float(value) for name, value in
            re.findall(r"^  (model|constant|identity)\b.*?(\d+\.\d{4})", out, re.MULTILINE)}


def test_the_scores_printed_are_written_to_scores_json(data, trained, tmp_path, capsys):
    capsys.readouterr()
    assert main(tiny_test_argv(data, trained, tmp_path, "--eval")) == 0
    out = capsys.readouterr().out
    record = json.loads((tiny_test_results(tmp_path) / "scores.json").read_text())
    weights = trained / "tiny" / "latest_net_G.pth"
    assert f"translated {record['images']} image(s) with {weights}" in out, out
    assert record["checkpoint"] == str(weights.resolve())
    assert {key: record[key] for key in ("format", "name", "phase", "epoch", "of", "complete")} \
        == {"format": 1, "name": "tiny", "phase": "test", "epoch": "latest",
            "of": record["images"], "complete": True}
    printed = _printed_l1(out)
    assert printed.keys() == {"model", "constant", "identity"}, out
    assert {name: round(value, 4) for name, value in record["l1"].items()} == printed
    assert f"; {record['constant_note']})" in out
    assert record["options"]["netG"] == "unet_32" and record["options"]["eval"] is True
    assert record["options"]["dataroot"] == str(data)


def test_a_failed_run_leaves_no_earlier_runs_scores(data, trained, tmp_path, capsys,
                                                    monkeypatch):
    """A full disk stops the run (exit 1) after the earlier run's file is removed, so the
    folder does not show that run's scores as this one's."""
    from fastp2p.train import reports

    argv = tiny_test_argv(data, trained, tmp_path)
    assert main(argv) == 0
    scores = tiny_test_results(tmp_path) / "scores.json"
    assert scores.is_file()

    def disk_full(image, path, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(reports, "save_image", disk_full)
    capsys.readouterr()
    assert main(argv) == 1
    assert "no index.html" in capsys.readouterr().err
    assert not scores.exists()
