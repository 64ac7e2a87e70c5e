"""pack checks the disk's free space before its first write (QA at 50k pairs, stop 44): it used
to fill the disk partway and stop on ENOSPC. What it counts is the shards still to write, less
the files they replace, so a resumed or repaired pack needs only the room of what it rewrites."""
import collections
import os
import shutil

import pytest

import fastp2p.data.pack as pack_module
from fastp2p.cli import main
from fastp2p.data.pack_plan import packed_load_size, plan_phase
from helpers.data_helpers import make_aligned, tiny_pack_args

PAIRS = 4           # 2 shards of 2 at load_size 16
PAIR = 16 * 32 * 3  # bytes of one stored pair
Usage = collections.namedtuple("Usage", "total used free")


@pytest.fixture
def data(tmp_path):
    make_aligned(tmp_path / "data", count=PAIRS)
    return tmp_path / "data"


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(pack_module.shutil, "disk_usage", lambda path: Usage(1 << 40, 0, free))


def _pack(data, out, *options) -> int:
    return main(tiny_pack_args(data, out, "--pairs-per-shard", "2", *options))


@pytest.mark.parametrize("gray", [False, True])
def test_a_pack_larger_than_the_free_space_is_refused_before_writing(data, tmp_path, monkeypatch,
                                                                     capsys, gray):
    needed = PAIRS * PAIR * (4 if gray else 3) // 3
    options = ["--gray"] if gray else []
    _free(monkeypatch, needed // 2)
    assert _pack(data, tmp_path / "out", *options) == 1
    phase = tmp_path / "out" / "train"
    need, have = ("8.0 KiB", "4.0 KiB") if gray else ("6.0 KiB", "3.0 KiB")
    assert capsys.readouterr().err.strip() == (
        f"fastp2p pack: error: {phase}: the 4 pairs still to pack need at least {need} on this "
        f"disk, which has {have} free; make room, or pack to a folder on another disk")
    assert sorted(path.name for path in phase.iterdir()) == [".pack.lock"]
    _free(monkeypatch, needed - 1)
    assert _pack(data, tmp_path / "out", *options) == 1
    _free(monkeypatch, needed)      # exactly enough
    assert _pack(data, tmp_path / "out", *options) == 0


def test_a_resumed_pack_needs_room_for_the_shards_it_writes_only(data, tmp_path, monkeypatch,
                                                                 capsys):
    out = tmp_path / "out"
    assert _pack(data, out) == 0
    (out / "train" / "shard-00001.u8").unlink()
    _free(monkeypatch, PAIR)
    assert _pack(data, out) == 1
    assert "the 2 pairs still to pack need at least 3.0 KiB on this disk, which has 1.5 KiB " \
           "free" in capsys.readouterr().err
    _free(monkeypatch, 2 * PAIR - 1)
    assert _pack(data, out) == 1
    assert not (out / "train" / "shard-00001.u8").exists()
    _free(monkeypatch, 2 * PAIR)
    assert _pack(data, out) == 0


def test_a_damaged_shard_rewritten_in_place_needs_no_more_room(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _pack(data, out) == 0
    shard = out / "train" / "shard-00000.u8"
    good = shard.read_bytes()
    shard.write_bytes(bytes(255 - b for b in good))     # same size, other bytes
    _free(monkeypatch, 0)
    assert _pack(data, out) == 0
    assert shard.read_bytes() == good


def test_the_real_disk_is_asked(data, tmp_path, monkeypatch):
    asked = []
    real = shutil.disk_usage
    monkeypatch.setattr(pack_module.shutil, "disk_usage",
                        lambda path: asked.append(path) or real(path))
    assert _pack(data, tmp_path / "out") == 0
    assert asked == [str(tmp_path / "out" / "train")]


@pytest.fixture
def two_phases(data):
    make_aligned(data, count=2, phase="val")
    return data


def test_the_phases_still_to_come_count_before_the_first_is_written(two_phases, tmp_path,
                                                                     monkeypatch, capsys):
    """Room for train but not for val was found only at val, after train was packed: now
    nothing is written (fails on 1df32a4, which packed train and then refused val)."""
    out = tmp_path / "out"
    _free(monkeypatch, (PAIRS + 1) * PAIR)     # room for train's 4 pairs, not for val's 2 too
    assert _pack(two_phases, out) == 1
    assert capsys.readouterr().err.strip() == (
        f"fastp2p pack: error: {out / 'train'}: the 6 pairs still to pack (4 in train, 2 in val)"
        " need at least 9.0 KiB on this disk, which has 7.5 KiB free; make room, or pack to a "
        "folder on another disk")
    assert sorted(path.name for path in out.rglob("*")) == [".pack.lock", "train"]
    _free(monkeypatch, (PAIRS + 2) * PAIR)
    assert _pack(two_phases, out) == 0


def test_a_later_phase_on_another_disk_is_not_counted(two_phases, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(pack_module, "disk_of", lambda path: (
        2 if os.path.basename(path) == "val" else 1, PAIRS * PAIR))
    assert _pack(two_phases, out) == 0
    assert (out / "val" / "index.json").is_file()


def test_a_bad_image_in_a_later_phase_stops_the_run_before_anything_is_written(two_phases,
                                                                                tmp_path,
                                                                                capsys):
    (two_phases / "val" / "pair01.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert _pack(two_phases, out) == 1
    assert "pair01.png" in capsys.readouterr().err
    assert not (out / "train").exists()


def test_a_later_phase_packed_already_is_not_counted(two_phases, tmp_path, monkeypatch, capsys):
    """Only a later phase's shards that are not there yet count (its kept ones are known only
    at its turn): a val packed already is not named, nor needs room (fails on 4bc0138, which
    listed '(2 in train, 2 in val)')."""
    out = tmp_path / "out"
    assert _pack(two_phases, out) == 0
    (out / "train" / "shard-00001.u8").unlink()
    _free(monkeypatch, PAIR)
    assert _pack(two_phases, out) == 1
    assert "the 2 pairs still to pack need at least 3.0 KiB on this disk" in capsys.readouterr().err
    _free(monkeypatch, 2 * PAIR)
    assert _pack(two_phases, out) == 0


def test_a_pack_of_another_load_size_written_since_the_plan_is_refused(two_phases, tmp_path):
    """The phases before a later one can take hours: its load-size check is made again once its
    folder is locked (fails on 4bc0138, which replaced the other pack)."""
    out = tmp_path / "out"
    plan = plan_phase(two_phases, out, "val", load_size=16, progress=False)
    pack_module.pack_phase(two_phases, out, "val", load_size=8, progress=False)
    with pytest.raises(pack_module.DataError, match="load_size"):
        pack_module.write_phase(plan, progress=False)
    assert packed_load_size(out / "val") == 8
