"""`fastp2p pack --synthetic N --seed S` gives seed S's files even where an earlier run of another
seed (or an older fastp2p, which recorded none) left its pairs: it used to keep them and print
"(seed S)" over another seed's files. It removes only the pairs its record says fastp2p wrote:
pair-named files of a user (ffmpeg frames), or past the recorded count, or under a record that
is unreadable or names no set, are refused, never deleted."""
import json

import numpy as np
import pytest
from PIL import Image

from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.synthetic import pair_name, write_synthetic


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def seed_sets(tmp_path_factory):
    """The files of 3 pairs of seed 0 and of seed 1, each written into an empty folder."""
    root = tmp_path_factory.mktemp("sets")
    return {seed: _files(write_synthetic(root / f"seed{seed}", 3, seed=seed, progress=False))
            for seed in (0, 1)}


def test_another_seed_writes_every_pair_again(tmp_path, seed_sets, capsys):
    assert seed_sets[0] != seed_sets[1]
    data = tmp_path / "data"
    assert main(["pack", "--synthetic", "3", "--seed", "0", str(data), "--no-progress"]) == 0
    assert _files(data / "train") == seed_sets[0]
    assert main(["pack", "--synthetic", "3", "--seed", "1", str(data), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "3 synthetic pairs (seed 1)" in captured.out
    assert "of seed 0, not of seed 1: writing the set again" in captured.err
    assert _files(data / "train") == seed_sets[1]
    assert json.loads((data / ".fastp2p-synthetic-train.json").read_text())["seed"] == 1


def test_the_same_seed_keeps_the_files_it_finds(tmp_path, seed_sets):
    folder = write_synthetic(tmp_path, 2, seed=1, progress=False)
    (folder / pair_name(0)).write_bytes(b"kept")    # an existing file is not written again
    write_synthetic(tmp_path, 3, seed=1, progress=False)
    files = _files(folder)
    assert files.pop(pair_name(0)) == b"kept"
    assert files == {name: data for name, data in seed_sets[1].items() if name != pair_name(0)}


def test_pairs_without_a_record_are_refused_not_removed(tmp_path):
    """An older fastp2p's folder, or a user's frames: nothing says fastp2p wrote them."""
    folder = write_synthetic(tmp_path, 3, seed=0, progress=False)
    (tmp_path / ".fastp2p-synthetic-train.json").unlink()
    before = _files(folder)
    with pytest.raises(DataError, match="write into an empty DATAROOT"):
        write_synthetic(tmp_path, 3, seed=1, progress=False)
    assert _files(folder) == before


def test_a_folder_with_other_files_is_refused_before_anything_is_removed(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    (folder / "mine.png").write_bytes(b"user data")
    before = _files(folder)
    with pytest.raises(DataError, match="mine.png"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(folder) == before


def _user_frames(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((8, 16, 3), 10 * i, np.uint8)).save(folder / pair_name(i))


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


@pytest.mark.parametrize("record", ["not json {", json.dumps({"size": 256, "quality": 90})])
def test_an_unreadable_or_setless_record_covers_no_files(tmp_path, record):
    """Garbage, or a record without a set (no seed): nothing says which files it wrote. (An
    older fastp2p's record, without a pair count: tests/test_synthetic_older_records.py.)"""
    _user_frames(tmp_path / "train", 3)
    (tmp_path / ".fastp2p-synthetic-train.json").write_text(record)
    before = _files(tmp_path / "train")
    with pytest.raises(DataError, match="write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(tmp_path / "train") == before


def test_an_oversized_record_is_said_too_large_not_unreadable(tmp_path):
    """A record past the 64 KiB that is read of one was said "unreadable", though it is read
    fine: too large to be fastp2p's."""
    from fastp2p.data.synthetic import MAX_RECORD_BYTES

    _user_frames(tmp_path / "train", 3)
    record = tmp_path / ".fastp2p-synthetic-train.json"
    record.write_text(json.dumps({"seed": 1, "size": 256, "quality": 90, "pairs": 3})
                      + " " * MAX_RECORD_BYTES)
    size = record.stat().st_size
    with pytest.raises(DataError) as raised:
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    message = str(raised.value)
    assert "unreadable" not in message, message
    assert (f"{record.name} is too large ({size} bytes, more than the {MAX_RECORD_BYTES}"
            in message and message.endswith("write into an empty DATAROOT")), message


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


@pytest.mark.parametrize("pairs", [3, 10 ** 12])
def test_a_record_over_a_users_frames_does_not_get_them_removed(tmp_path, pairs):
    """A record counts pairs, not files: one copied in, or left after its pairs were deleted
    by hand and the user's frames put there, covered those frames, and another seed deleted
    them. Only files carrying the pairs' JPEG comment are removed now."""
    _user_frames(tmp_path / "train", 3)
    (tmp_path / ".fastp2p-synthetic-train.json").write_text(
        json.dumps({"seed": 0, "size": 256, "quality": 90, "pairs": pairs}))
    before = _files(tmp_path / "train")
    with pytest.raises(DataError,
                       match=f"{pair_name(0)}.* without the JPEG comment.*write into an empty"):
        write_synthetic(tmp_path, 3, seed=1, progress=False)
    assert _files(tmp_path / "train") == before


def test_an_older_fastp2ps_pairs_without_the_comment_are_left_to_the_user(tmp_path):
    """Pairs an older fastp2p wrote carry no JPEG comment: the refusal called them "not
    fastp2p's", which a user upgrading knows to be wrong, and did not say what to do."""
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    for path in folder.iterdir():   # as an older fastp2p wrote them: the same JPEG, no comment
        with Image.open(path) as image:
            pixels = np.asarray(image)
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
    before = _files(folder)
    with pytest.raises(DataError, match=r"not fastp2p's, or an older fastp2p's, written before "
                                        r"that comment: remove them yourself\); write into"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(folder) == before
