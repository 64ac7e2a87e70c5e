"""`fastp2p test` with a --load_size above --crop_size translates random crops, as the
reference's test.py does; it now says so in one line (QA r54: the L1 report moved from 0.34 to
0.28 with nothing printed to say why). Whole images, the default, print no such line."""
from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, trained  # noqa: F401 (fixture)

NOTE = "--load_size 40 is above --crop_size 32: each test image is resized to 40 and a random"


def test_random_crops_are_said(tmp_path, trained, capsys):
    data, checkpoints = trained
    argv = tiny_test_argv(data, checkpoints, tmp_path / "results")
    argv[argv.index("--load_size") + 1] = "40"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count(NOTE) == 1 and "leave out --load_size for whole images" in out, out


def test_whole_images_say_nothing_of_crops(tmp_path, trained, capsys):
    data, checkpoints = trained
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 0
    assert "random 32-pixel crop" not in capsys.readouterr().out
