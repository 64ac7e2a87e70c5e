"""A pack's bookkeeping (index.json, pack-state.json, .pack.lock) when it is hostile or damaged
(QA r42, secqa):

- malformed "skipped" items in a shard record ([1], three strings, an object) were accepted by
  training and --verify, and a re-run of `fastp2p pack` died of a traceback printing them; the
  schema refuses them in one line now, and pack does not reuse such a record (it packs the
  shard again);
- control characters of an index (a dataroot holding a newline and terminal escapes, a skipped
  file's name) reached the terminal raw; a dataroot with them is the DATAROOT placeholder of
  the suggested command now, and skipped items are printed escaped;
- a shard or an index.json that is a FIFO, a link to a device or a folder was "shard missing",
  or the pack was taken for an image folder ("no images found") and --verify found "no
  index.json"; each is named as no regular file now;
- `fastp2p pack` over an index.json or pack-state.json that is a folder rewrote every shard,
  then failed naming its temp file; it refuses before writing anything now;
- an index.json of any size was read whole (and parsed several times); one larger than any
  pack's index is refused before it is read;
- a lock file that training refuses (FIFO, folder, link) passed --verify.
"""
import json
import os
import re

import pytest

from fastp2p.cli import main
from fastp2p.data import DataError, create_dataset
from fastp2p.data.folder_lock import LOCK_NAME
from fastp2p.data.packed_index import (INDEX_NAME, MAX_INDEX_BYTES, STATE_NAME, is_packed,
                                       printable, read_index)
from fastp2p.file_reads import FileTooLarge, read_text
from helpers.data_helpers import data_args, make_aligned, tiny_pack_args
from helpers.train_helpers import one_line

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")

PAIRS = 4


@pytest.fixture
def packed(tmp_path):
    """(DATAROOT, OUT/train) of a pack of PAIRS pairs, one per shard."""
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=PAIRS)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "1")) == 0
    return data, out / "train"


def _edit_index(phase_dir, edit):
    path = phase_dir / INDEX_NAME
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))


def _open(phase_dir):
    return create_dataset(data_args(phase_dir.parent, "--load_size", "16", "--crop_size", "16"),
                          "train")


def _verify(phase_dir, capsys):
    capsys.readouterr()
    code = main(["pack", "--verify", str(phase_dir.parent), "--no-progress"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("items", [[1], [["a", "b", "c"]], [{"a": 1}], "x"],
                         ids=["int", "three", "object", "string"])
def test_malformed_skipped_items_of_an_index_are_refused_and_repacked(packed, capsys, items):
    data, phase_dir = packed
    _edit_index(phase_dir, lambda index: index["shards"][0].update(skipped=items))
    with pytest.raises(DataError, match=r"shards\[0\]\.skipped must be a list of \[file, why\]"):
        _open(phase_dir)
    code, err = _verify(phase_dir, capsys)
    assert code == 1 and r"shards[0].skipped" in one_line(err)
    # the re-run packs that shard again (its record is not reused) and prints no traceback
    assert main(tiny_pack_args(data, phase_dir.parent, "--pairs-per-shard", "1")) == 0
    assert read_index(phase_dir)["shards"][0]["skipped"] == []


def test_a_malformed_top_level_skipped_list_is_refused(packed):
    _, phase_dir = packed
    _edit_index(phase_dir, lambda index: index.update(skipped=[["a.png"]]))
    with pytest.raises(DataError, match=r"field 'skipped' must be a list of \[file, why\]"):
        read_index(phase_dir)


def _interrupted_with(phase_dir, items):
    """Make ``phase_dir`` a pack interrupted after its shards were written, shard 0's record
    in pack-state.json having "skipped" ``items``, and its last shard still to do."""
    index = json.loads((phase_dir / INDEX_NAME).read_text())
    records = {shard["file"]: dict(shard, sources=[index["sources"][number]])
               for number, shard in enumerate(index["shards"])}
    records["shard-00000.u8"]["skipped"] = items
    (phase_dir / STATE_NAME).write_text(json.dumps({"load_size": 16, "shards": records}))
    (phase_dir / INDEX_NAME).unlink()
    (phase_dir / f"shard-{PAIRS - 1:05d}.u8").unlink()


@pytest.mark.parametrize("items", [[1], [["a", "b", "c"]], [{"a": 1}]],
                         ids=["int", "three", "object"])
def test_a_resumed_pack_does_not_reuse_a_record_with_malformed_skipped_items(packed, capsys,
                                                                           items):
    data, phase_dir = packed
    _interrupted_with(phase_dir, items)
    capsys.readouterr()
    assert main(tiny_pack_args(data, phase_dir.parent, "--pairs-per-shard", "1")) == 0
    assert "skipped" not in capsys.readouterr().err
    assert read_index(phase_dir)["skipped"] == []


def test_skipped_items_are_printed_without_their_control_characters(packed, capsys):
    data, phase_dir = packed
    _interrupted_with(phase_dir, [["x\x1b]0;title\x07\nfake line", "why\x1b[2K"]])
    capsys.readouterr()
    assert main(tiny_pack_args(data, phase_dir.parent, "--pairs-per-shard", "1")) == 0
    err = capsys.readouterr().err
    assert one_line(err) == r"skipped x\x1b]0;title\x07\nfake line: why\x1b[2K"


def test_printable_escapes_control_characters_only():
    assert printable("data/é 1.png") == "data/é 1.png"
    assert printable("a\nb\x1b[2K\x07\udcff") == r"a\nb\x1b[2K\x07\udcff"
    # only what acts on a terminal: a no-break space, an emoji's zero-width joiner and a soft
    # hyphen stay (str.isprintable refuses them, and a command shown with them escaped could
    # not be copied); a right-to-left override and a line separator do not
    kept = "café\xa0set/👩\u200d💻\xad.png"
    assert printable(kept) == kept
    assert printable("a\u202eb\u2028c\x7f\x9b") == r"a\u202eb\u2028c\x7f\x9b"


def test_a_dataroot_with_control_characters_is_not_shown_in_the_repack_command(packed, capsys):
    _, phase_dir = packed

    def hostile(index):
        index["dataroot"] = "/data\n fastp2p train: all good\x1b[2K\x1b]0;title\x07"
        index["shards"][0]["crc32"] ^= 1
    _edit_index(phase_dir, hostile)
    code, err = _verify(phase_dir, capsys)
    line = one_line(err)
    assert code == 1 and "\x1b" not in line and "`fastp2p pack DATAROOT " in line
    with pytest.raises(DataError) as refusal:
        _open(phase_dir)[0]
    assert "\n" not in str(refusal.value) and "\x1b" not in str(refusal.value)
    assert "`fastp2p pack DATAROOT " in str(refusal.value)


def _plant(path, kind, link_to="/dev/zero"):
    """Replace the file at ``path`` with a FIFO, a folder or a link (to ``link_to``)."""
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(link_to)


KINDS = {"fifo": "a FIFO", "folder": "a folder", "devzero": "a device"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_shard_that_is_no_regular_file_is_named_so_not_missing(packed, capsys, kind):
    _, phase_dir = packed
    _plant(phase_dir / "shard-00001.u8", kind)
    expected = f"shard-00001.u8: shard is not a regular file ({KINDS[kind]})"
    with pytest.raises(DataError, match=re.escape(expected)):
        _open(phase_dir)
    code, err = _verify(phase_dir, capsys)
    assert code == 1 and expected in err and "missing" not in err


@pytest.mark.parametrize("kind", KINDS)
def test_an_index_that_is_no_regular_file_is_named_so(packed, capsys, kind):
    _, phase_dir = packed
    _plant(phase_dir / INDEX_NAME, kind)
    expected = f"{INDEX_NAME}: {INDEX_NAME} is not a regular file ({KINDS[kind]})"
    assert is_packed(phase_dir)
    with pytest.raises(DataError, match=re.escape(expected)):
        _open(phase_dir)
    code, err = _verify(phase_dir, capsys)
    assert code == 1 and expected in one_line(err)


def test_an_image_folder_with_a_folder_named_index_json_is_still_read_as_images(tmp_path):
    make_aligned(tmp_path / "data", count=2)
    (tmp_path / "data" / "train" / INDEX_NAME).mkdir()
    assert not is_packed(tmp_path / "data" / "train")
    assert len(_open(tmp_path / "data" / "train")) == 2


@pytest.mark.parametrize("name", [INDEX_NAME, STATE_NAME])
def test_pack_refuses_a_folder_at_its_bookkeeping_before_writing_anything(tmp_path, capsys,
                                                                          name):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2)
    (out / "train" / name).mkdir(parents=True)
    capsys.readouterr()
    assert main(tiny_pack_args(data, out)) == 1
    line = one_line(capsys.readouterr().err)
    assert f"{name}: not a regular file (a folder)" in line and ".tmp-" not in line
    assert sorted(p.name for p in (out / "train").iterdir()) == [name]


def test_an_index_larger_than_any_pack_writes_is_refused_unread(packed, capsys):
    _, phase_dir = packed
    with open(phase_dir / INDEX_NAME, "r+b") as index:
        index.truncate(MAX_INDEX_BYTES + 1)     # sparse: no disk, and it is never read
    with pytest.raises(DataError, match="more than any pack's index"):
        _open(phase_dir)
    code, err = _verify(phase_dir, capsys)
    assert code == 1 and "more than any pack's index" in one_line(err)


def test_read_text_refuses_more_than_max_bytes(tmp_path):
    (tmp_path / "a.txt").write_text("12345")
    assert read_text(tmp_path / "a.txt", 5) == "12345"
    with pytest.raises(FileTooLarge, match="6 bytes, more than the 5"):
        (tmp_path / "a.txt").write_text("123456")
        read_text(tmp_path / "a.txt", 5)


@pytest.mark.parametrize("kind", ["fifo", "folder", "link"])
def test_verify_fails_a_pack_whose_lock_file_training_refuses(packed, capsys, kind):
    _, phase_dir = packed
    _plant(phase_dir / LOCK_NAME, kind, link_to=phase_dir.parent / "elsewhere")
    with pytest.raises(DataError, match=LOCK_NAME) as refusal:
        _open(phase_dir)
    code, err = _verify(phase_dir, capsys)
    assert code == 1 and str(refusal.value) in one_line(err)


def test_pack_refuses_before_writing_a_split_whose_index_readers_would_refuse(tmp_path,
                                                                             monkeypatch):
    """pack wrote such an index whole (MAX_INDEX_BYTES is checked on reads only); then train,
    --verify and the re-run meant to fix it refused it (review r42)."""
    import fastp2p.data.pack as pack
    import fastp2p.data.pack_plan as pack_plan

    data = tmp_path / "data"
    make_aligned(data, count=3)
    index = pack.pack_phase(data, tmp_path / "fits", "train", load_size=16, progress=False)
    written = len((tmp_path / "fits" / "train" / "index.json").read_bytes())
    assert pack_plan.index_bytes_bound(index["sources"], [], shards=1) >= written
    monkeypatch.setattr(pack_plan, "MAX_INDEX_BYTES", written - 1)
    monkeypatch.setattr(pack_plan, "_INDEX_BYTES_BESIDES_NAMES", written)
    with pytest.raises(DataError, match=r"the index of its 3 pairs would be about .* more than "
                                        r"the .* a pack's readers read; pack it as several"):
        pack.pack_phase(data, tmp_path / "out", "train", load_size=16, progress=False)
    assert not (tmp_path / "out").exists()


def test_index_bytes_bound_covers_names_json_escapes():
    from fastp2p.data.pack_plan import index_bytes_bound

    pairs = [["a/b.png", "a/b.png"], ["日本語の名前.png", "x"], ['q"uo\\te', "\x01"]]
    ascii_only = [["a/b.png", "c.png"]] * 50   # each ["a", "b"] and the ", " after it
    assert (index_bytes_bound(ascii_only, [], shards=0) - (1 << 20)
            >= len(json.dumps(ascii_only)) - 2)
    exact = len(json.dumps({"sources": pairs}))
    assert index_bytes_bound(pairs, [], shards=0) - (1 << 20) >= exact - len('{"sources": }')
