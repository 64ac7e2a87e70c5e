"""`fastp2p test` writes its scores to RESULTS_DIR/NAME/PHASE_EPOCH/scores.json beside
index.html (QA, a sweep: the scores were only printed, so a collector had to scrape the `model
(fake_B) ...` lines), and a run that fails leaves no earlier run's file as its own."""
import argparse
import errno
import json
import os
import re

from fastp2p.cli import main
from fastp2p.train.score_file import SCORED_OPTIONS, scores_record
from fastp2p.train.triplet_writing import Translated
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
    from fastp2p.train import sample_images

    argv = tiny_test_argv(data, trained, tmp_path)
    assert main(argv) == 0
    scores = tiny_test_results(tmp_path) / "scores.json"
    assert scores.is_file()

    def disk_full(image, path, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(sample_images, "save_image", disk_full)
    capsys.readouterr()
    assert main(argv) == 1
    assert "no index.html" in capsys.readouterr().err
    assert not scores.exists()


def test_scores_json_that_cannot_be_written_fails_after_the_scores_are_printed(
        data, trained, tmp_path, capsys, monkeypatch):
    """A full disk at scores.json: the images and their page are whole, so the end lines and
    scores are printed (before: neither was, only the error), without a `scores:` line for
    the file not written, and the command fails (exit 1) after them."""
    from fastp2p.train import score_file

    def disk_full(path, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(score_file, "write_scores", disk_full)
    capsys.readouterr()
    assert main(tiny_test_argv(data, trained, tmp_path)) == 1
    captured = capsys.readouterr()
    assert "translated 4 image(s) with " in captured.out
    assert _printed_l1(captured.out).keys() == {"model", "constant", "identity"}
    assert "open: " in captured.out and "scores: " not in captured.out
    assert "only scores.json failed" in captured.err
    assert not (tiny_test_results(tmp_path) / "scores.json").exists()


def test_the_point_of_the_run_tested_is_recorded(data, trained, tmp_path, capsys):
    """The epoch and step the checkpoint was saved at (as the end line names them), so that a
    sweep tells apart tests of one run's latest_* taken at other points of its training."""
    assert main(tiny_test_argv(data, trained, tmp_path)) == 0
    assert "(after epoch 1, step " in capsys.readouterr().out
    record = json.loads((tiny_test_results(tmp_path) / "scores.json").read_text())
    step = json.loads((trained / "tiny" / "latest_checkpoint.json").read_text())["step"]
    assert record["saved_at"] == {"epoch": 1, "step": step, "epoch_complete": True}
    assert record["run_training"] is False


def _scored_args(dataroot) -> argparse.Namespace:
    args = argparse.Namespace(**dict.fromkeys(SCORED_OPTIONS), name="tiny", phase="test",
                              epoch="latest")
    args.dataroot = dataroot
    return args


def test_the_dataset_is_recorded_as_an_absolute_path_or_as_the_embedded_one(tmp_path,
                                                                              monkeypatch):
    """A relative --dataroot is another dataset from another folder, and the embedded
    dataset's null read as "no dataset": each is recorded so that a sweep tells them apart."""
    monkeypatch.chdir(tmp_path)
    def recorded(dataroot):
        translated = Translated(count=1, total=1, scores=None, stopped_by=None)
        point = {"saved_at": None, "run_training": False}
        return scores_record(_scored_args(dataroot), translated, "w.pth", point)["options"]

    assert recorded("ds")["dataroot"] == str(tmp_path / "ds")
    assert recorded(None)["dataroot"] == "embedded"
