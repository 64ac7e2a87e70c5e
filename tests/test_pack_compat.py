"""Data written by fastp2p before the stop-17 data changes (commit 697fdfe), and 16-bit PGM/PPM
files: regressions a review reproduced; each test fails on the code before the fix.

1. The "gray" setting entered every shard's plan digest, so a re-run of the same `fastp2p pack`
   rewrote every shard of an older pack (finished or interrupted); and the repack hint of an
   index without a "skip_bad" field left out --skip-bad.
2. A synthetic-set record of an older fastp2p (no pair count) was refused as unreadable.
3. 16-bit PGM/PPM files (Pillow mode I, format PPM) were refused as 32-bit integer images.
"""
import hashlib
import io
import json
import shlex

import numpy as np
import pytest
from PIL import Image

import fastp2p.data.pack as pack_module
from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.folders import decode_rgb, open_rgb, read_info
from fastp2p.data.pack import STATE_NAME, pack_phase
from fastp2p.data.packed import INDEX_NAME, pack_command_line, repack_hint
from fastp2p.data.synthetic import pair_name, write_synthetic

LOAD_SIZE = 8


# ---- 1. packs of 697fdfe: kept by a re-run of the same command ------------------------------

def _aligned_images(root, count, bad=False):
    folder = root / "train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (LOAD_SIZE, 2 * LOAD_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    if bad:
        (folder / "999.jpg").write_bytes(b"not an image")


def _old_plan(dataroot, pairs, skip_bad):
    """A shard's plan digest as 697fdfe computed it (its settings had no "gray")."""
    settings = {"format": "fastp2p-pack", "version": 2, "load_size": LOAD_SIZE,
                "dataset_mode": "aligned", "skip_bad": skip_bad}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted({p for pair in pairs for p in pair}):
        stat = (dataroot / name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _make_old_pack(dataroot, out, skip_bad):
    """Pack with today's code, then rewrite its index as 697fdfe wrote it: no "skip_bad" or
    "gray" field, and the plan digests of that version. Returns the index."""
    pack_phase(dataroot, out, "train", load_size=LOAD_SIZE, skip_bad=skip_bad,
               pairs_per_shard=2, progress=False)
    index_path = out / "train" / INDEX_NAME
    index = json.loads(index_path.read_text())
    del index["skip_bad"], index["gray"]
    start = 0
    for shard in index["shards"]:
        pairs = index["sources"][start:start + shard["count"]]
        shard["plan"] = _old_plan(dataroot.resolve(), pairs, skip_bad)
        start += shard["count"]
    index_path.write_text(json.dumps(index))
    return index


def _make_old_pack_unrecorded(dataroot, out, skip_bad, written_shards):
    index = _make_old_pack(dataroot, out, skip_bad)
    written_shards.clear()      # what the re-run writes, not what made the pack
    return index


def _shard_stats(phase_dir):
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
            for path in sorted(phase_dir.glob("shard-*.u8"))}


@pytest.fixture
def written_shards(monkeypatch):
    """The shard files each (in-process) re-run writes."""
    written = []
    real = pack_module.write_shard

    def recording(job):
        written.append(job["file"])
        return real(job)
    monkeypatch.setattr(pack_module, "write_shard", recording)
    return written


def test_an_older_finished_pack_is_kept_by_the_same_command(tmp_path, written_shards):
    _aligned_images(tmp_path / "data", 6)
    _make_old_pack_unrecorded(tmp_path / "data", tmp_path / "out", False, written_shards)
    before = _shard_stats(tmp_path / "out" / "train")
    assert len(before) == 3
    index = pack_phase(tmp_path / "data", tmp_path / "out", "train", load_size=LOAD_SIZE,
                       pairs_per_shard=2, progress=False)
    assert written_shards == []
    assert _shard_stats(tmp_path / "out" / "train") == before
    assert index["gray"] is False and index["skip_bad"] is False


def test_an_interrupted_older_pack_resumes(tmp_path, written_shards):
    _aligned_images(tmp_path / "data", 6)
    index = _make_old_pack_unrecorded(tmp_path / "data", tmp_path / "out", False,
                                      written_shards)
    phase_dir = tmp_path / "out" / "train"
    # as 697fdfe left a run killed after two shards: {"shards": ...} only, no index
    records = {}
    for number, shard in enumerate(index["shards"][:2]):
        pairs = index["sources"][2 * number:2 * number + shard["count"]]
        records[shard["file"]] = dict(shard, sources=pairs)
    (phase_dir / STATE_NAME).write_text(json.dumps({"shards": records}))
    (phase_dir / INDEX_NAME).unlink()
    (phase_dir / index["shards"][2]["file"]).unlink()
    before = _shard_stats(phase_dir)
    pack_phase(tmp_path / "data", tmp_path / "out", "train", load_size=LOAD_SIZE,
               pairs_per_shard=2, progress=False)
    assert written_shards == [index["shards"][2]["file"]]
    after = _shard_stats(phase_dir)
    assert {name: after[name] for name in before} == before
    assert (phase_dir / INDEX_NAME).is_file() and not (phase_dir / STATE_NAME).exists()


@pytest.mark.parametrize("skip_bad", [True, False])
def test_the_repack_command_of_an_older_pack_keeps_its_skip_bad(tmp_path, written_shards, capsys,
                                                                skip_bad):
    """Its index has no "skip_bad" (and the bad file, skipped by the scan, is not in its
    "skipped" list): the plan digests tell. Run as printed, the command keeps every shard."""
    _aligned_images(tmp_path / "data", 6, bad=skip_bad)
    index = _make_old_pack_unrecorded(tmp_path / "data", tmp_path / "out", skip_bad,
                                      written_shards)
    assert "skip_bad" not in index and index["skipped"] == []
    phase_dir = tmp_path / "out" / "train"
    command = pack_command_line(phase_dir, index)
    assert ("--skip-bad" in command.split()) == skip_bad
    assert "add --skip-bad" not in repack_hint(phase_dir, index)    # known: nothing to guess
    before = _shard_stats(phase_dir)
    assert main(shlex.split(command)[1:] + ["--no-progress"]) == 0
    capsys.readouterr()
    assert written_shards == []
    assert _shard_stats(phase_dir) == before


def test_an_older_index_that_cannot_tell_skip_bad(tmp_path):
    _aligned_images(tmp_path / "data", 4)
    index = _make_old_pack(tmp_path / "data", tmp_path / "out", skip_bad=True)
    phase_dir = tmp_path / "out" / "train"
    moved = dict(index, dataroot=str(tmp_path / "gone"))     # sources gone: no plan to compare
    assert "--skip-bad" not in pack_command_line(phase_dir, moved).split()
    assert "add --skip-bad if the pack was made with it" in repack_hint(phase_dir, moved)
    # a pair skipped while packing (a file gone bad after the scan) shows it
    skipped = dict(moved, skipped=[["train/000.png", "truncated"]])
    assert "--skip-bad" in pack_command_line(phase_dir, skipped).split()
    assert "add --skip-bad" not in repack_hint(phase_dir, skipped)
    # a current index says it: no note
    assert "add --skip-bad" not in repack_hint(phase_dir, dict(moved, skip_bad=False))


# ---- 2. synthetic sets of an older fastp2p --------------------------------------------------

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


# ---- 3. 16-bit PGM/PPM --------------------------------------------------------------------

def _pgm(raw: np.ndarray, maxval: int) -> bytes:
    height, width = raw.shape
    return f"P5\n{width} {height}\n{maxval}\n".encode() + raw.astype(">u2").tobytes()


@pytest.mark.parametrize("maxval", [65535, 1023])
def test_16_bit_pgm_is_scaled_to_8_bits(tmp_path, maxval):
    raw = np.random.default_rng(maxval).integers(0, maxval + 1, (6, 10)).astype(np.uint16)
    raw[0, :2] = [0, maxval]
    path = tmp_path / "p.ppm"
    path.write_bytes(_pgm(raw, maxval))
    with Image.open(path) as img:
        assert (img.mode, img.format) == ("I", "PPM")
        # Pillow scales 0..maxval to 0..65535: the I;16 rule (round(v / 257)) then applies
        wide = np.asarray(img).astype(np.int64)
        assert wide[0, 0] == 0 and wide[0, 1] == 65535
        got = np.asarray(decode_rgb(img))
    assert got.dtype == np.uint8 and got.shape == (6, 10, 3)
    assert np.array_equal(got[..., 0], ((wide + 128) // 257).astype(np.uint8))
    assert np.array_equal(got[..., 0], got[..., 2])
    # the true value raw * 255 / maxval, within the two roundings
    assert np.abs(got[..., 0] - raw.astype(np.float64) * 255 / maxval).max() <= 0.51
    assert got[0, :2, 0].tolist() == [0, 255]
    assert read_info(path, decode=True).grayscale
    assert np.array_equal(np.asarray(open_rgb(path)), got)


def test_a_32_bit_integer_image_is_still_refused_as_such():
    buffer = io.BytesIO()
    Image.fromarray((np.arange(12, dtype=np.int32) * 100000).reshape(3, 4)).save(buffer, "TIFF")
    with Image.open(buffer) as img:
        assert img.mode == "I"
        with pytest.raises(DataError, match="32-bit integer image"):
            decode_rgb(img)
