"""Links in an image folder (the folder datasets and `fastp2p pack` share the listing):

- a broken link with an image name (a loop of links too) is a one-line error naming it (with
  --skip-bad: skipped, listed and counted in pack's summary); it used to be left out without a
  word;
- a link to a folder is followed like a link to a file (its images used to be left out without
  a word), except one that leads back to a folder above it, a loop: that one is named on
  stderr and not followed;
- a folder that cannot be listed is an error naming it, not a smaller dataset.
"""
import json
import os

import pytest

import fastp2p.data.folders as folders
from fastp2p.cli import main
from helpers.data_helpers import make_aligned


def _pack(data, out, *options):
    return main(["pack", str(data), str(out), "--load_size", "16", "--workers", "1",
                 "--no-progress", *options])


def test_a_broken_link_to_an_image_is_an_error_naming_it(tmp_path, capsys):
    data = tmp_path / "data"
    make_aligned(data, count=3)
    link = data / "train" / "pair03.png"
    link.symlink_to(tmp_path / "gone.png")
    capsys.readouterr()
    assert _pack(data, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{link}: broken link: it points to {tmp_path / 'gone.png'}, which does not exist" in err


def test_with_skip_bad_a_broken_link_is_skipped_and_counted(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=3)
    (data / "train" / "pair03.png").symlink_to(tmp_path / "gone.png")
    (data / "train" / "pair04.png").symlink_to("pair04.png")     # a loop of one link
    capsys.readouterr()
    assert _pack(data, out, "--skip-bad") == 0
    captured = capsys.readouterr()
    assert "3 pairs in" in captured.out and "2 bad files skipped" in captured.out
    assert "skipped train/pair03.png: broken link" in captured.err
    assert "skipped train/pair04.png: broken link" in captured.err


def test_a_linked_folder_is_followed(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2)
    make_aligned(tmp_path / "elsewhere", count=2, phase="more")
    (data / "train" / "more").symlink_to(tmp_path / "elsewhere" / "more",
                                         target_is_directory=True)
    assert _pack(data, out) == 0
    index = json.loads((out / "train" / "index.json").read_text())
    assert [a for a, _ in index["sources"]] == [
        "train/more/pair00.png", "train/more/pair01.png", "train/pair00.png", "train/pair01.png"]


def test_a_folder_link_back_up_is_named_and_not_followed(tmp_path, capsys):
    train = tmp_path / "train"
    images = make_aligned(tmp_path, count=2)
    (train / "sub").mkdir()
    (train / "sub" / "up").symlink_to(train, target_is_directory=True)
    assert folders.list_images(train) == images
    err = capsys.readouterr().err
    assert f"ignoring 1 folder links in {train} that lead back to a folder above them" in err
    assert err.rstrip().endswith(": sub/up")


def test_a_folder_that_cannot_be_listed_is_an_error_naming_it(tmp_path, monkeypatch):
    train = tmp_path / "train"
    make_aligned(tmp_path, count=1)
    (train / "locked").mkdir()
    real_scandir = os.scandir

    def refusing(path):     # as for a folder without read permission (root reads any)
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(folders.DataError) as error:
        folders.list_images(train)
    assert str(error.value).startswith(f"{train / 'locked'}: cannot list this folder "
                                       "(Permission denied)")
