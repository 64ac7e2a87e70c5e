"""Messy image folders (the QA "images" report): file names that act on a terminal, FIFOs
named like images, one name twice in two_folders, Pillow's palette-transparency warning, the
advice of one error said once, and what pack checks before it writes."""
import pytest

from helpers.data_helpers import data_args, make_aligned, tiny_pack_args
from fastp2p.cli import main
from fastp2p.data import DataError, create_dataset

RED_ESCAPE = "\x1b[31m"


def _folder_with_escapes(root):
    make_aligned(root, count=2, width=16, height=16)
    (root / "train" / f"bad{RED_ESCAPE}RED\nline.jpg").write_bytes(b"not an image")
    (root / "train" / f"note{RED_ESCAPE}.webp").write_bytes(b"x")


def test_file_names_that_act_on_a_terminal_are_escaped_in_every_message(tmp_path, capsys):
    """Finding 2: a newline or an escape sequence in a file name reached the error line of
    train, test and pack raw (splitting it, or acting on the terminal), and train's --skip-bad
    list and the line of files left out."""
    _folder_with_escapes(tmp_path / "data")
    with pytest.raises(DataError) as caught:
        create_dataset(data_args(tmp_path / "data"), "train")
    assert "bad\\x1b[31mRED\\nline.jpg: not a readable image" in str(caught.value)
    create_dataset(data_args(tmp_path / "data", "--skip-bad"), "train")
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("bad\\x1b[31mRED\\nline.jpg") == 2, err
    assert "note\\x1b[31m.webp" in err