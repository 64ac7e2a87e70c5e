"""A baseline whose L1 is 0 (fake_B = real_A with real_A equal to real_B): the L1 report shows
no ratio to it ("n/a") and `fastp2p test` finishes, instead of dividing by zero."""
import numpy as np
import torch
from PIL import Image

from fastp2p.cli import main
from fastp2p.train.evaluation import L1Scores
from helpers.train_helpers import tiny_test_argv


def test_a_baseline_with_l1_zero_shows_no_ratio():
    image = torch.rand(1, 3, 8, 8) * 2 - 1
    scores = L1Scores(True, image[0].clone(), "the mean of 1 train image")
    scores.add(image, image + 0.5, image)   # identity and constant baselines exact
    report = scores.report()
    assert "(model / constant n/a;" in report and "(model / identity n/a;" in report
    assert "model (fake_B)        0.5000" in report


def test_test_command_finishes_when_real_a_is_real_b(data, trained, tmp_path, capsys):
    same = tmp_path / "same" / "test"
    same.mkdir(parents=True)
    half = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half], 1)).save(same / "x.png")
    capsys.readouterr()
    assert main(tiny_test_argv(same.parent, trained, tmp_path / "results")) == 0
    out = capsys.readouterr().out
    assert "identity baseline     0.0000  (model / identity n/a; fake_B = real_A)" in out
    assert "open: " in out
