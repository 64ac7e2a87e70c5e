"""`fastp2p pack --synthetic N --seed S` gives seed S's files even where an earlier run of another
seed (or an older fastp2p, which recorded none) left its pairs: it used to keep them and print
"(seed S)" over another seed's files."""
import json

import pytest

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
    assert "of seed 0, not of seed 1: writing them again" in captured.err
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
