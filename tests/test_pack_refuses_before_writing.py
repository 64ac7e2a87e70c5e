"""`fastp2p pack --synthetic N DATAROOT OUT` asks everything that can refuse OUT (a pack of
another --load_size there, OUT equal to DATAROOT or inside a phase folder it reads) before it
writes a synthetic pair: a refused command leaves DATAROOT as it was."""
from fastp2p.cli import main


def _packed_at_20(tmp_path):
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", "4", str(data), str(out), "--load_size", "20",
                 "--no-progress", "--workers", "1"]) == 0
    return out


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_a_pack_of_another_load_size_is_refused_before_any_pair_is_written(tmp_path, capsys):
    out = _packed_at_20(tmp_path)
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    assert main(["pack", "--synthetic", "4", str(fresh), str(out), "--load_size", "24",
                 "--no-progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "--load_size 20" in err and "--overwrite" in err
    assert _tree(fresh) == []
    # with --overwrite the same command writes the pairs and replaces the pack
    assert main(["pack", "--synthetic", "4", str(fresh), str(out), "--load_size", "24",
                 "--overwrite", "--no-progress", "--workers", "1"]) == 0
    assert len(list((fresh / "train").glob("*.jpg"))) == 4


def test_out_equal_to_dataroot_is_refused_before_any_pair_is_written(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["pack", "--synthetic", "4", str(data), str(data), "--no-progress",
                 "--workers", "1"]) == 1
    assert "OUT must differ from DATAROOT" in capsys.readouterr().err
    assert _tree(data) == []


def test_out_inside_a_phase_folder_read_is_refused_before_anything_is_written(tmp_path,
                                                                              capsys):
    data = tmp_path / "data"
    assert main(["pack", "--synthetic", "4", str(data), "--no-progress", "--workers", "1"]) == 0
    pairs = _tree(data)
    capsys.readouterr()
    # OUT/train would land in data/train/train, read as images by every later pack or run
    assert main(["pack", str(data), str(data / "train"), "--no-progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OUT is inside DATAROOT's phase folder" in err
    assert _tree(data) == pairs
    # a phase folder not packed this run, or not there yet, is one later reads of DATAROOT take
    # as a phase: shards in data/val were files that no image, data/test an empty split
    for out, phase in (("val", ["--phase", "train"]), ("test", [])):
        assert main(["pack", str(data), str(data / out), *phase, "--no-progress",
                     "--workers", "1"]) == 1, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"phase folder {data / out}" in err, err
        assert _tree(data) == pairs
    # beside the phase folders, inside DATAROOT, is fine: nothing read is there
    assert main(["pack", str(data), str(data / "packed"), "--no-progress", "--workers", "1"]) == 0


def test_a_pack_of_another_load_size_in_a_phase_not_packed_does_not_refuse(tmp_path):
    out = _packed_at_20(tmp_path)
    (out / "train").rename(out / "val")  # the new DATAROOT has no val/: OUT/val is not asked
    assert main(["pack", "--synthetic", "4", str(tmp_path / "fresh"), str(out),
                 "--load_size", "24", "--no-progress", "--workers", "1"]) == 0
