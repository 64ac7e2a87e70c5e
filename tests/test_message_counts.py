"""Counts in the data messages agree with their nouns ("1 file", "2 files"; QA r39 nit): the
files a scan leaves out, the bad files refused or skipped, pack's summary."""
import pytest

from fastp2p.cli import main
from fastp2p.data.errors import DataError, counted, raise_or_report
from fastp2p.data.folders import list_images
from helpers.data_helpers import make_aligned, tiny_pack_args


def test_counted_agrees_with_its_count():
    assert [counted(n, "bad file") for n in (0, 1, 2)] == ["0 bad files", "1 bad file",
                                                          "2 bad files"]


def test_one_left_out_file_and_one_more_bad_file_are_singular(tmp_path, capsys):
    make_aligned(tmp_path, count=1)
    (tmp_path / "train" / "notes.txt").write_text("")
    list_images(tmp_path / "train")
    assert f"ignoring 1 file in {tmp_path / 'train'} (only .jpg/" in capsys.readouterr().err
    (tmp_path / "train" / "more.txt").write_text("")
    list_images(tmp_path / "train")
    assert f"ignoring 2 files in {tmp_path / 'train'}" in capsys.readouterr().err
    problems = [(tmp_path / "a.png", "unreadable"), (tmp_path / "b.png", "unreadable")]
    with pytest.raises(DataError, match=r"\(1 more bad file in train by their headers alone; "
                       r"--skip-bad decodes every image and may find more\)$"):
        raise_or_report(problems, False, "train")
    raise_or_report(problems[:1], True, "train")
    assert "fastp2p: skipped 1 bad file in train (--skip-bad):" in capsys.readouterr().err


def test_pack_summary_of_one_pair_and_one_bad_file_is_singular(tmp_path, capsys):
    make_aligned(tmp_path / "data", count=1)
    (tmp_path / "data" / "train" / "broken.png").write_bytes(b"not a png")
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out", "--skip-bad")) == 0
    assert (f"{tmp_path / 'out' / 'train'}: 1 pair in 1 shard, 1 bad file skipped"
            in capsys.readouterr().out)
