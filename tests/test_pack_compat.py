"""Packs written by an older fastp2p (commit 697fdfe: no "gray" or "skip_bad" in the index, plan
digests without "gray"): a re-run of the same `fastp2p pack` keeps every shard of a finished one
and resumes an interrupted one, and the repack command of such a pack keeps its --skip-bad, or
says when the index cannot tell it."""
import hashlib
import json
import shlex

import numpy as np
import pytest
from PIL import Image

import fastp2p.data.pack as pack_module
from fastp2p.cli import main
from fastp2p.data.pack import STATE_NAME, pack_phase
from fastp2p.data.packed_index import INDEX_NAME, pack_command_line, repack_hint


LOAD_SIZE = 8


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
    "gray" field, files the scan skipped left out of "skipped", and the plan digests of that
    version. Returns the index."""
    pack_phase(dataroot, out, "train", load_size=LOAD_SIZE, skip_bad=skip_bad,
               pairs_per_shard=2, progress=False)
    index_path = out / "train" / INDEX_NAME
    index = json.loads(index_path.read_text())
    del index["skip_bad"], index["gray"]
    index["skipped"] = [item for shard in index["shards"] for item in shard["skipped"]]
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
