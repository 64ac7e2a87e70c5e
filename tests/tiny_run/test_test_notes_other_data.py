"""`fastp2p test` says in one line each where it reads other data than the run was trained on:
another --dataroot (the embedded dataset too, without one) or another image size (QA r63: a run
trained on ds at crop 32 was tested on the embedded dataset, or at 256, exit 0 and no word; the
L1 went to the same results folder). Only said: test takes the generator's options alone from
the run, as the reference's takes none."""
import shutil

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv

DATASET_NOTE = "note: reads another dataset than the run was trained on (--dataroot "
SIZE_NOTE = "note: translates at another image size than the run was trained at ("


def _notes(capsys) -> list:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]


def _without(argv, *options) -> list:
    """``argv`` less each of ``options`` and its value."""
    argv = list(argv)
    for option in options:
        at = argv.index(option)
        del argv[at:at + 2]
    return argv


def test_the_runs_own_data_and_size_say_nothing(tmp_path, data, trained, capsys):
    assert main(tiny_test_argv(data, trained, tmp_path / "results")) == 0
    assert _notes(capsys) == []


def test_another_dataroot_is_said(tmp_path, data, trained, capsys):
    other = shutil.copytree(data, tmp_path / "other")
    assert main(tiny_test_argv(other, trained, tmp_path / "results")) == 0
    assert _notes(capsys) == [f"{DATASET_NOTE}{data} -> {other}, its train_opt.txt)"]


def test_the_runs_dataroot_through_a_link_says_nothing(tmp_path, data, trained, capsys):
    """The same folder reached through a symbolic link is the same dataset (before: a note
    named a change from the run's path to the link's)."""
    link = tmp_path / "linked"
    link.symlink_to(data)
    assert main(tiny_test_argv(link, trained, tmp_path / "results")) == 0
    assert _notes(capsys) == []


def test_the_embedded_dataset_is_said(tmp_path, data, trained, capsys):
    """Without --dataroot test reads the embedded dataset (the reference requires one)."""
    argv = _without(tiny_test_argv(data, trained, tmp_path / "results"), "--dataroot")
    assert main(argv + ["--num_test", "1"]) == 0
    assert _notes(capsys) == [f"{DATASET_NOTE}{data} -> None: the embedded dataset, its "
                              "train_opt.txt)"]


def test_another_crop_size_is_said(tmp_path, data, trained, capsys):
    """The test's default, 256, on a run trained at 32."""
    argv = _without(tiny_test_argv(data, trained, tmp_path / "results"), "--load_size",
                    "--crop_size")
    assert main(argv + ["--num_test", "1"]) == 0
    assert _notes(capsys) == [f"{SIZE_NOTE}--crop_size 32 -> 256, its train_opt.txt)"]


def test_a_load_size_is_compared_only_for_crops_of_larger_images(tmp_path, data, trained,
                                                                  capsys):
    """A run that trained on crops of larger images (the reference's 256 of 286) is tested on
    whole images at its crop size, as the reference's test means: no note; a test that asks
    for random crops of another load size is told."""
    copied = shutil.copytree(trained, tmp_path / "ckpt")
    options = copied / "tiny" / "train_opt.txt"
    options.write_text(options.read_text().replace("load_size: 32\n", "load_size: 40\n"))
    argv = tiny_test_argv(data, copied, tmp_path / "results")
    assert main(argv) == 0
    assert _notes(capsys) == []
    argv[argv.index("--load_size") + 1] = "48"
    assert main(argv) == 0
    assert f"{SIZE_NOTE}--load_size 40 -> 48, its train_opt.txt)" in _notes(capsys)
