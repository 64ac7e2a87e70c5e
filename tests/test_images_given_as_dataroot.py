"""A --dataroot given as the folder of images itself, not as the folder holding its train/
split, is refused with where the images go (QA r54: only "DATAROOT/train: folder not found")."""
import shutil

from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


def _flat_images(tmp_path):
    """A folder holding A|B images directly (no train/ inside)."""
    data = write_aligned_dataset(tmp_path / "data")
    flat = tmp_path / "flat"
    shutil.copytree(data / "train", flat)
    return flat


def test_train_says_to_move_the_images_into_train(tmp_path, capsys):
    flat = _flat_images(tmp_path)
    assert main(train_argv(flat, tmp_path / "ckpt")) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith(f"; {flat} holds images itself: move them into "
                                f"{flat / 'train'}"), err


def test_pack_says_to_move_the_images_into_train(tmp_path, capsys):
    flat = _flat_images(tmp_path)
    assert main(["pack", str(flat), str(tmp_path / "out"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert f"{flat} holds images itself: move them into {flat / 'train'}" in err, err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_images_gets_no_such_advice(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "readme.txt").write_text("not an image")
    assert main(train_argv(empty, tmp_path / "ckpt")) == 1
    err = capsys.readouterr().err
    assert "folder not found" in err and "holds images itself" not in err, err
