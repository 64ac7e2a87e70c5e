"""Links in an image folder (the folder datasets and `fastp2p pack` share the listing):

- a broken link with an image name is a one-line error naming it (with --skip-bad: skipped,
  listed and counted in pack's summary); it used to be left out without a word. A loop of links
  is called one (it was called a broken link to a file that does exist);
- a link to a folder is followed like a link to a file (its images used to be left out without
  a word), each real folder once: a link that leads back to the listed folder or above it (a
  loop), or to a folder listed already, is named on stderr and not followed. A link to a
  folder above the listed one was followed (a train folder took in test/'s images), and a
  second link to the same folder listed its images twice (exponentially many times down a
  chain of such links);
- a folder that cannot be listed is an error naming it, not a smaller dataset.
"""
import inspect
import json
import os
import sys

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
    assert "skipped train/pair04.png: a loop of links" in captured.err


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
    assert (f"ignoring 1 linked folder in {train} leading to a folder above (a loop) or to one "
            "listed already") in err
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


def test_a_loop_of_two_links_is_called_a_loop(tmp_path, capsys):
    data = tmp_path / "data"
    make_aligned(data, count=1)
    (data / "train" / "a.png").symlink_to("b.png")
    (data / "train" / "b.png").symlink_to("a.png")
    capsys.readouterr()
    assert _pack(data, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"{data / 'train' / 'a.png'}: a loop of links, or a chain of links too long to " \
           "follow: it points to b.png" in err
    assert "broken link" not in err


def test_a_link_to_a_folder_above_the_listed_one_is_not_followed(tmp_path, capsys):
    train = tmp_path / "data" / "train"
    images = make_aligned(tmp_path / "data", count=2)
    make_aligned(tmp_path / "data", count=2, phase="test")
    (train / "up").symlink_to("..", target_is_directory=True)
    assert folders.list_images(train) == images      # no test/ image through up/test
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith("each folder is listed once): up")


def test_each_folder_is_listed_once_under_its_own_name(tmp_path, capsys):
    train = tmp_path / "train"
    images = make_aligned(tmp_path, count=1, phase="train/z")
    (train / "a").symlink_to("z", target_is_directory=True)    # sorts before the real folder
    (train / "b").symlink_to("z", target_is_directory=True)
    assert folders.list_images(train) == images
    assert capsys.readouterr().err.rstrip().endswith("listed once): a, b")


def test_a_chain_of_doubled_links_lists_each_image_once(tmp_path, capsys):
    # level i holds an image and two links to level i + 1: 2 ** depth paths to the last image
    depth = 12
    levels = [tmp_path / f"level{i:02d}" for i in range(depth + 1)]
    for number, level in enumerate(levels):
        make_aligned(level, count=1, phase=f"img{number:02d}")
    for level, below in zip(levels, levels[1:]):
        for name in ("a", "b"):
            (level / name).symlink_to(below, target_is_directory=True)
    listed = folders.list_images(levels[0])
    assert len(listed) == depth + 1
    err = capsys.readouterr().err
    assert f"ignoring {depth} linked folders in {levels[0]}" in err
    shown = err.split("listed once): ")[1].split(" and ")[0].split(", ")
    assert len(shown) == 3 and all(name.endswith("/b") for name in shown)   # a/.../a/b


def test_a_tree_deeper_than_the_recursion_limit_is_listed(tmp_path):
    deep = tmp_path
    for _ in range(300):
        deep = deep / "d"
        deep.mkdir()
    image = make_aligned(deep, count=1)[0]
    limit = sys.getrecursionlimit()
    # 100 frames more than this test's: a walk that recursed per folder needs 300
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        listed = folders.list_images(tmp_path)
    finally:
        sys.setrecursionlimit(limit)
    assert listed == [image]
