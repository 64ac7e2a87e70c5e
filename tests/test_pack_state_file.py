"""pack-state.json, the record of an unfinished pack, is appended to, not rewritten:

- each finished shard costs one line (its record) appended and fsynced: the state was rewritten
  whole after every shard, so a pack of n shards wrote O(n^2) bytes of JSON (tens of GB for a
  million pairs);
- a last line cut short (a crash while it was appended: half a line, zeros) is a shard not
  recorded: that shard alone is packed again, and the next run writes the state anew without it;
- anything else that is not what pack writes (garbage before the last line, a header of a newer
  version) is named on stderr in one line, and every shard is packed again, as for any unreadable
  bookkeeping;
- the state of an older fastp2p (one JSON object) is still resumed.
"""
import errno
import json
import os

import pytest

from fastp2p.data import pack as pack_module
from fastp2p.data.errors import DataError
from fastp2p.data.pack import pack_phase
from fastp2p.data.pack_plan import packed_load_size
from fastp2p.data.packed_index import (INDEX_NAME, MAX_INDEX_BYTES, STATE_NAME, read_pack_state,
                                       state_line, verify_pack)
from fastp2p.file_reads import FileTooLarge
from helpers.data_helpers import make_aligned

LOAD = 16
WRITE_SHARD = pack_module.write_shard


@pytest.fixture
def data(tmp_path):
    make_aligned(tmp_path / "data", count=6)
    return tmp_path / "data"


def _pack(data, out, **options):
    return pack_phase(data, out, "train", load_size=LOAD, pairs_per_shard=1, progress=False,
                      **options)


def _counting_shards(monkeypatch, stop_after=None) -> list:
    """The shard files written from now on, in order; with ``stop_after``, a KeyboardInterrupt
    (a Ctrl-C between two shards) instead of the shard after that many."""
    written = []

    def write(job):
        if stop_after is not None and len(written) == stop_after:
            raise KeyboardInterrupt
        written.append(job["file"])
        return WRITE_SHARD(job)
    monkeypatch.setattr(pack_module, "write_shard", write)
    return written


def _every_shard_packed_again(data, tmp_path, monkeypatch, capsys) -> str:
    """Packs ``data`` into tmp_path/out again and asserts that no shard was kept (the state was
    not used); what pack said on stderr, from that run alone."""
    capsys.readouterr()
    written = _counting_shards(monkeypatch)
    _pack(data, tmp_path / "out")
    assert written == [f"shard-0000{n}.u8" for n in range(6)]
    return capsys.readouterr().err


def _interrupted(data, out, monkeypatch, shards: int):
    """The phase folder of a pack stopped (Ctrl-C) after ``shards`` shards."""
    _counting_shards(monkeypatch, stop_after=shards)
    with pytest.raises(KeyboardInterrupt):
        _pack(data, out)
    phase = out / "train"
    assert not (phase / INDEX_NAME).exists()
    return phase


def _lines(path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def test_each_finished_shard_writes_only_its_own_line(data, tmp_path, monkeypatch):
    """Bytes written to the state file over a run, counted as the file system shows them: a
    file replaced (another inode) was written whole, one grown in place by what it grew. They
    were quadratic in the shards (every record rewritten after each): here every byte of the
    last state was written once, and nothing else. Fails on c172e23 (~4x the last state's
    bytes for 6 shards, growing with their number)."""
    real_index, seen = pack_module._index, []

    def look():
        stat = os.stat(tmp_path / "out" / "train" / STATE_NAME)
        seen.append((stat.st_ino, stat.st_size))
    monkeypatch.setattr(pack_module, "write_shard", lambda job: look() or WRITE_SHARD(job))
    monkeypatch.setattr(pack_module, "_index", lambda *a, **k: look() or real_index(*a, **k))
    _pack(data, tmp_path / "out")
    assert len(seen) == 7       # before each of the 6 shards, and after the last
    written = seen[0][1] + sum(size if inode != before_inode else size - before_size
                               for (before_inode, before_size), (inode, size)
                               in zip(seen, seen[1:]))
    assert written == seen[-1][1]


def test_each_finished_shards_line_is_fsynced_once_it_is_written(data, tmp_path, monkeypatch):
    """A shard renamed into place is kept only if its record survives a power loss: its line
    is on the disk (fsynced) before the next shard starts. Without the fsync no test failed."""
    state = tmp_path / "out" / "train" / STATE_NAME
    real_fsync, events = os.fsync, []

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}") == str(state):
            events.append(("synced", os.fstat(fd).st_size))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(pack_module, "write_shard",
                        lambda job: events.append(("shard", job["file"])) or WRITE_SHARD(job))
    _pack(data, tmp_path / "out")
    assert [kind for kind, _ in events] == ["shard", "synced"] * 6, events
    sizes = [size for kind, size in events if kind == "synced"]
    assert sizes == sorted(set(sizes)), sizes    # each after its own line was appended


def test_the_state_is_a_header_line_and_a_line_per_finished_shard(data, tmp_path,
                                                                  monkeypatch):
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    lines = _lines(phase / STATE_NAME)
    assert lines[-1] == b""         # every line ends with its newline
    assert json.loads(lines[0]) == {"format": "fastp2p-pack-state", "version": 1,
                                    "load_size": LOAD, "dataroot": str(data)}
    records = [json.loads(line) for line in lines[1:-1]]
    assert [record["file"] for record in records] == [f"shard-0000{n}.u8" for n in range(3)]
    assert all(record["sources"] == [[f"train/pair0{n}.png"] * 2]
               for n, record in enumerate(records))
    state = read_pack_state(phase / STATE_NAME)
    assert state == {"load_size": LOAD, "dataroot": str(data),
                     "shards": {record["file"]: record for record in records}}


def _cut_in_half(lines):
    return b"\n".join(lines[:-2]) + b"\n" + lines[-2][:len(lines[-2]) // 2]


def _zeros(lines):         # the file grown, its last line's bytes not yet on disk
    return b"\n".join(lines[:-2]) + b"\n" + b"\0" * (len(lines[-2]) + 1)


def _zeros_then_newline(lines):
    return b"\n".join(lines[:-2]) + b"\n" + b"\0" * len(lines[-2]) + b"\n"


def _bytes_not_utf8(lines):
    return b"\n".join(lines[:-2]) + b"\n" + lines[-2][:10] + b"\xff\xfe"


@pytest.mark.parametrize("cut", [_cut_in_half, _zeros, _zeros_then_newline, _bytes_not_utf8],
                         ids=["half-line", "zeros", "zeros-newline", "not-utf8"])
def test_a_last_line_cut_short_is_a_shard_not_recorded(data, tmp_path, monkeypatch, capsys,
                                                       cut):
    fresh = _pack(data, tmp_path / "fresh")
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    (phase / STATE_NAME).write_bytes(cut(_lines(phase / STATE_NAME)))
    assert sorted(read_pack_state(phase / STATE_NAME)["shards"]) == ["shard-00000.u8",
                                                                     "shard-00001.u8"]
    capsys.readouterr()
    written = _counting_shards(monkeypatch)
    resumed = _pack(data, tmp_path / "out")
    assert written == [f"shard-0000{n}.u8" for n in range(2, 6)]   # 0 and 1 kept
    assert capsys.readouterr().err == ""
    assert resumed["shards"] == fresh["shards"] and resumed["sources"] == fresh["sources"]
    assert not (phase / STATE_NAME).exists()
    verify_pack(phase)


def test_the_next_run_writes_the_state_anew_without_the_cut_line(data, tmp_path, monkeypatch):
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    (phase / STATE_NAME).write_bytes(_cut_in_half(_lines(phase / STATE_NAME)))
    _interrupted(data, tmp_path / "out", monkeypatch, shards=1)     # packs shard 2 again
    lines = _lines(phase / STATE_NAME)
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])
    assert sorted(read_pack_state(phase / STATE_NAME)["shards"]) == [
        f"shard-0000{n}.u8" for n in range(3)]


@pytest.mark.parametrize("line, why", [
    (b"garbage", "line 2: not JSON"),
    (b"", "line 2: not JSON"),
    (b"[1, 2]", "line 2: not a shard record"),
    (b'{"count": 1}', "line 2: not a shard record"),
    (b'{"file": "\xff.u8"}', "line 2: not UTF-8 text"),
], ids=["not-json", "blank", "list", "no-file", "not-utf8"])
def test_a_bad_line_before_the_last_is_named_and_every_shard_packed_again(
        data, tmp_path, monkeypatch, capsys, line, why):
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    lines = _lines(phase / STATE_NAME)
    lines[1] = line
    (phase / STATE_NAME).write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=why):
        read_pack_state(phase / STATE_NAME)
    err = _every_shard_packed_again(data, tmp_path, monkeypatch, capsys)
    assert err.count("\n") == 1 and str(phase / STATE_NAME) in err and why in err
    assert "every shard is packed again" in err
    verify_pack(phase)


@pytest.mark.parametrize("version, why", [
    (2, "pack state version 2, written by a newer fastp2p"),
    (True, "its version is not 1"),     # `true` and 1.0 equal 1 in Python: such a header
    (1.0, "its version is not 1"),      # was read as this fastp2p's state
], ids=["newer", "true", "a-float"])
def test_a_state_of_another_version_is_named_and_not_used(data, tmp_path, monkeypatch, capsys,
                                                          version, why):
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=2)
    lines = _lines(phase / STATE_NAME)
    lines[0] = json.dumps({"format": "fastp2p-pack-state", "version": version,
                           "load_size": LOAD}).encode()
    (phase / STATE_NAME).write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=why):
        read_pack_state(phase / STATE_NAME)
    assert why in _every_shard_packed_again(data, tmp_path, monkeypatch, capsys)


def test_an_older_fastp2ps_state_is_resumed(data, tmp_path, monkeypatch, capsys):
    """An older fastp2p's interrupted pack: its state one JSON object, rewritten whole after
    each shard (test_pack_compat has one older still, without its load_size)."""
    fresh = _pack(data, tmp_path / "fresh")
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    state = read_pack_state(phase / STATE_NAME)
    (phase / STATE_NAME).write_text(json.dumps(state))
    assert read_pack_state(phase / STATE_NAME) == state
    capsys.readouterr()
    written = _counting_shards(monkeypatch)
    resumed = _pack(data, tmp_path / "out")
    assert written == [f"shard-0000{n}.u8" for n in range(3, 6)]
    assert capsys.readouterr().err == ""
    assert resumed["shards"] == fresh["shards"]
    verify_pack(phase)


def test_the_header_gives_the_unfinished_packs_load_size(data, tmp_path, monkeypatch):
    _interrupted(data, tmp_path / "out", monkeypatch, shards=2)
    with pytest.raises(DataError, match=f"--load_size {LOAD} to resume"):
        pack_phase(data, tmp_path / "out", "train", load_size=LOAD + 4, progress=False)


def test_the_header_gives_the_unfinished_packs_dataroot(data, tmp_path, monkeypatch):
    """An interrupted pack of another DATAROOT is not replaced unasked (its finished shards
    may be hours of work), as a finished one is not: --overwrite replaces it."""
    other = tmp_path / "other"
    make_aligned(other, count=2)
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=2)
    _counting_shards(monkeypatch)       # no more Ctrl-C
    before = {path.name: path.read_bytes() for path in phase.iterdir()}
    with pytest.raises(DataError, match=f"holds a pack of DATAROOT {data}, not {other}"):
        _pack(other, tmp_path / "out")
    assert {path.name: path.read_bytes() for path in phase.iterdir()} == before
    assert _pack(other, tmp_path / "out", overwrite=True)["count"] == 2


def test_state_lines_are_ascii_whatever_the_names(tmp_path):
    """A record's names as JSON writes them (\\uXXXX): no byte of a line is a newline, and a
    name's bytes cannot be cut in the middle of a character."""
    record = {"file": "shard-00000.u8", "sources": [["train/é\u2028\n.png"] * 2]}
    line = state_line(record)
    assert line.isascii() and line.count(b"\n") == 1 and line.endswith(b"\n")
    path = tmp_path / STATE_NAME
    path.write_bytes(state_line({"format": "fastp2p-pack-state", "version": 1, "load_size": 8})
                     + line)
    assert read_pack_state(path) == {"load_size": 8, "dataroot": None,
                                     "shards": {"shard-00000.u8": record}}


def test_a_state_file_larger_than_any_pack_writes_is_refused_unread(tmp_path):
    path = tmp_path / STATE_NAME
    path.write_bytes(state_line({"format": "fastp2p-pack-state", "version": 1, "load_size": 8}))
    with open(path, "r+b") as state:
        state.truncate(MAX_INDEX_BYTES + 1)     # sparse: no disk, and it is never read
    with pytest.raises(FileTooLarge):
        read_pack_state(path)
    assert packed_load_size(tmp_path) is None


def _state_read_fails(monkeypatch, error: Exception):
    def read(path):
        raise error
    monkeypatch.setattr(pack_module, "read_pack_state", read)


@pytest.mark.parametrize("number, words", [
    (errno.EACCES, "cannot read it (Permission denied; to resume from it instead, stop this "
                   "run, make it readable by this user"),
    (errno.EIO, "cannot read it (Input/output error; to resume from it instead, stop this run, "
                "the disk or file server failed to read it"),
    (errno.ENXIO, "cannot read it (No such device or address)"),
], ids=["permission", "device", "other-errno"])
def test_a_state_that_cannot_be_read_says_so_not_that_pack_did_not_write_it(
        data, tmp_path, monkeypatch, capsys, number, words):
    """An OSError reading the state is said as one (its errno's advice, the path once), not
    as a file that is not pack's; every shard is packed again, as for any unusable state."""
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    state = phase / STATE_NAME
    _state_read_fails(monkeypatch, OSError(number, os.strerror(number), str(state)))
    err = _every_shard_packed_again(data, tmp_path, monkeypatch, capsys)
    assert err.count("\n") == 1 and err.count(str(state)) == 1
    assert f"{state}: {words}" in err and "every shard is packed again" in err
    assert "not a state file pack wrote" not in err
    assert number != errno.ENXIO or "to resume from it" not in err


def test_a_state_too_large_is_named_by_its_size_and_path_once(data, tmp_path, monkeypatch,
                                                              capsys):
    phase = _interrupted(data, tmp_path / "out", monkeypatch, shards=3)
    state = phase / STATE_NAME
    with open(state, "r+b") as handle:
        handle.truncate(MAX_INDEX_BYTES + 1)     # sparse, never read
    err = _every_shard_packed_again(data, tmp_path, monkeypatch, capsys)
    assert err.count("\n") == 1 and err.count(str(state)) == 1
    assert (f"not a state file pack wrote ({MAX_INDEX_BYTES + 1:,} bytes, "
            "more than the 1.0 GiB it reads)") in err
