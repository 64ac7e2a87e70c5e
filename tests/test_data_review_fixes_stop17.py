"""Data-pipeline defects a review reproduced (stop 17): each test fails on the code before the fix.

1. `fastp2p pack --synthetic N DIR` removed every pair-named file of DIR/train without a record
   saying fastp2p wrote it: a user's ffmpeg frames (0000000.jpg, ...) were deleted, exit 0.
"""
import json

import numpy as np
import pytest
from PIL import Image

from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.synthetic import pair_name, write_synthetic


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _user_frames(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((8, 16, 3), 10 * i, np.uint8)).save(folder / pair_name(i))


# ---- 1. --synthetic removes only the pairs its record says fastp2p wrote --------------------

def test_synthetic_refuses_a_users_pair_named_frames(tmp_path, capsys):
    _user_frames(tmp_path / "mine" / "train", 20)
    before = _files(tmp_path / "mine" / "train")
    code = main(["pack", "--synthetic", "5", str(tmp_path / "mine"), str(tmp_path / "out"),
                 "--load_size", "36", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert _files(tmp_path / "mine" / "train") == before
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "mine" / "train") in lines[0]
    assert "write into an empty DATAROOT" in lines[0]
    assert not (tmp_path / "mine" / ".fastp2p-synthetic-train.json").exists()


@pytest.mark.parametrize("record", ["not json {", json.dumps({"seed": 0, "size": 256,
                                                              "quality": 90})])
def test_an_unreadable_or_countless_record_covers_no_files(tmp_path, record):
    """Garbage, or an older fastp2p's record (no pair count): nothing says which files it wrote."""
    _user_frames(tmp_path / "train", 3)
    (tmp_path / ".fastp2p-synthetic-train.json").write_text(record)
    before = _files(tmp_path / "train")
    with pytest.raises(DataError, match="write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(tmp_path / "train") == before


def test_pair_named_files_past_the_recorded_count_are_refused(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 2
    (folder / pair_name(5)).write_bytes(b"a user's frame")
    before = _files(folder)
    with pytest.raises(DataError, match=f"{pair_name(5)}.*write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(folder) == before


def test_recorded_pairs_of_another_seed_are_still_replaced(tmp_path):
    write_synthetic(tmp_path / "one", 3, seed=1, progress=False)
    folder = write_synthetic(tmp_path, 3, seed=0, progress=False)
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 3
    (folder / pair_name(2)).unlink()        # as if a removal was interrupted: none are foreign
    write_synthetic(tmp_path, 3, seed=1, progress=False)
    assert _files(folder) == _files(tmp_path / "one" / "train")
