"""`fastp2p pack` into an OUT that holds a pack of another DATAROOT (a mistyped folder, say) is
refused in one line naming both folders unless --overwrite, as a pack of another --load_size
is; the same DATAROOT, by another spelling of its path too, still resumes or updates it."""
import os

from fastp2p.cli import main
from fastp2p.data.packed_index import read_index


def _pack(data, out, *extra):
    return main(["pack", str(data), str(out), "--load_size", "20", "--no-progress",
                 "--workers", "1", *extra])


def _two_datasets(tmp_path, capsys):
    data, other, out = tmp_path / "data", tmp_path / "other", tmp_path / "packed"
    assert main(["pack", "--synthetic", "4", str(data), str(out), "--load_size", "20",
                 "--no-progress", "--workers", "1"]) == 0
    assert main(["pack", "--synthetic", "3", str(other), "--no-progress", "--workers", "1"]) == 0
    capsys.readouterr()
    return data, other, out


def _pack_files(phase_dir):
    return {path.name: path.read_bytes() for path in sorted(phase_dir.iterdir())}


def test_a_pack_of_another_dataroot_is_refused_without_overwrite(tmp_path, capsys):
    data, other, out = _two_datasets(tmp_path, capsys)
    before = _pack_files(out / "train")
    assert _pack(other, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "train") in err[0]
    assert str(data.resolve()) in err[0] and str(other.resolve()) in err[0]
    assert "--overwrite" in err[0]
    assert _pack_files(out / "train") == before
    assert _pack(other, out, "--overwrite") == 0
    index = read_index(out / "train")
    assert index["dataroot"] == str(other.resolve()) and index["count"] == 3


def test_synthetic_pairs_for_a_pack_of_another_dataroot_are_not_written(tmp_path, capsys):
    _, _, out = _two_datasets(tmp_path, capsys)
    fresh = tmp_path / "fresh"
    assert main(["pack", "--synthetic", "2", str(fresh), str(out), "--load_size", "20",
                 "--no-progress", "--workers", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert not fresh.exists()


def test_the_same_dataroot_by_another_path_updates_the_pack(tmp_path, capsys, monkeypatch):
    data, _, out = _two_datasets(tmp_path, capsys)
    link = tmp_path / "link"
    link.symlink_to(data)
    (data / "train" / "0000003.jpg").unlink()   # an image removed: the pack follows
    monkeypatch.chdir(tmp_path)
    assert _pack(os.path.join("link"), out) == 0
    assert read_index(out / "train")["count"] == 3
