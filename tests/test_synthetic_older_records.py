"""A synthetic-set record an older fastp2p wrote (commit 697fdfe: the set only, no pair count):
`write_synthetic` keeps and completes the set it describes, replaces a set of another seed, and
vouches only for the pairs numbered from 0 without a gap."""
import json

import pytest

from fastp2p.data.errors import DataError
from fastp2p.data.synthetic import pair_name, write_synthetic


def _old_record(dataroot, seed=0):
    """The record 697fdfe wrote: the set only, no pair count."""
    (dataroot / ".fastp2p-synthetic-train.json").write_text(
        json.dumps({"seed": seed, "size": 256, "quality": 90}))


def _files(folder):
    return {path.name: (path.stat().st_ino, path.read_bytes()) for path in sorted(folder.iterdir())}


def test_an_older_synthetic_set_is_kept_and_completed(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    _old_record(tmp_path)
    before = _files(folder)
    write_synthetic(tmp_path, 3, seed=0, progress=False)
    after = _files(folder)
    assert {name: after[name] for name in before} == before     # not written again
    assert sorted(after) == [pair_name(i) for i in range(3)]
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 3


def test_an_older_synthetic_set_of_another_seed_is_replaced(tmp_path):
    write_synthetic(tmp_path / "one", 2, seed=1, progress=False)
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    _old_record(tmp_path)
    write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert ({name: data for name, (_, data) in _files(folder).items()}
            == {name: data for name, (_, data) in _files(tmp_path / "one" / "train").items()})


def test_an_older_record_vouches_only_for_pairs_numbered_from_0_without_a_gap(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    _old_record(tmp_path)
    (folder / pair_name(3)).write_bytes(b"a user's frame")      # past the gap at 2
    before = _files(folder)
    for seed in (0, 1):
        with pytest.raises(DataError, match=f"{pair_name(3)}.*write into an empty DATAROOT"):
            write_synthetic(tmp_path, 4, seed=seed, progress=False)
        assert _files(folder) == before
