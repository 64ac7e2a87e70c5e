"""Packs whose bookkeeping was written by hand or by another program, and packs written by two
`fastp2p pack` runs at once:

- an index whose sizes are not what pack writes (height == width == load_size, 3 channels) is
  refused in one line before a pixel is read: one with height 16 and width 64 trained on memory
  the crop never filled;
- the crop of packed pairs refuses a crop larger than the stored halves instead of leaving part
  of the batch unwritten;
- well-formed JSON of the wrong shape in index.json or pack-state.json is unreadable bookkeeping:
  the re-run packs those shards again (it crashed with AttributeError);
- a state record or an index whose fields disagree with each other or with the shards (more
  sources than pairs, a grayscale file outside the folder, a count the shards do not hold, a
  CRC32 past 32 bits): the record is not kept, the index is refused on opening;
- a re-run removes only the temporary files of dead processes: another pack's, still being
  written, made the first run die with "No such file or directory" (and a second pack into a
  folder one is writing is now refused at once: test_pack_limits_and_lock).
"""
import json
import os
import random
import re
import subprocess
import sys
import time

import pytest
import torch

from fastp2p.cli import main
from fastp2p.command_errors import EXIT_IN_USE
from fastp2p.data.errors import DataError
from fastp2p.data.gpu_augment import augment_batch, augment_pairs_torch
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import read_index
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import dead_pid, synthetic_pack


@pytest.fixture
def packed(tmp_path, capsys):
    """(DATAROOT, OUT) of a finished synthetic pack: 6 pairs, load_size 20, 3 shards."""
    data, out = synthetic_pack(tmp_path, pairs=6)
    capsys.readouterr()
    return data, out


def _shard_bytes(phase_dir):
    return {path.name: path.read_bytes() for path in sorted(phase_dir.glob("shard-*.u8"))}


def _edit_index(phase_dir, **fields):
    path = phase_dir / "index.json"
    index = json.loads(path.read_text())
    index.update(fields)
    path.write_text(json.dumps(index))


@pytest.mark.parametrize("fields", [
    {"height": 10, "width": 40, "load_size": 40},   # the same bytes per pair: sizes still fit
    {"height": 40, "width": 10, "load_size": 10},
    {"width": 40, "height": 40},                    # load_size 20 says otherwise
    {"channels": 1},
    {"preprocess": "crop"},
], ids=["short-and-wide", "tall-and-narrow", "not-load_size", "one-channel", "crop"])
def test_an_index_of_sizes_pack_never_writes_is_refused_in_one_line(packed, fields):
    _, out = packed
    _edit_index(out / "train", **fields)
    with pytest.raises(DataError) as caught:
        read_index(out / "train")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{out / 'train' / 'index.json'}: not a fastp2p pack index: ")
    assert "re-run `fastp2p pack" in message


def test_training_on_a_short_and_wide_index_is_refused(tmp_path, capsys, monkeypatch):
    """The reviewer's repro: a pack of load_size 32 whose index says height 16, width 64,
    load_size 64 (the same bytes per pair) trained (exit 0) on crops the stored 16 rows could
    not fill, through the PyTorch crop (no Triton kernel)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", "2", str(data), str(out), "--load_size", "32",
                 "--no-progress"]) == 0
    _edit_index(out / "train", height=16, width=64, load_size=64)
    capsys.readouterr()
    code = main(["train", "--dataroot", str(out), "--checkpoints_dir", str(tmp_path / "ck"),
                 "--name", "crafted", "--netG", "unet_32", "--ngf", "4", "--ndf", "4",
                 "--load_size", "64", "--crop_size", "32", "--num_threads", "0",
                 "--n_epochs", "1", "--n_epochs_decay", "0", "--no_html"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "not a fastp2p pack index" in err


def _pairs(height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, height, 2 * width, 3), dtype=torch.uint8,
                         generator=generator)


def test_the_crop_refuses_a_crop_larger_than_the_stored_halves():
    pairs = _pairs(16, 64)   # crop 32 is taller than the halves
    config = Preprocess(load_size=64, crop_size=32)
    with pytest.raises(ValueError, match="--crop_size 32 is larger than the stored pairs' "
                                         r"halves \(16x64\)"):
        augment_batch(pairs, config, [random.Random(0), random.Random(1)])
    zeros = torch.zeros(2, dtype=torch.int32)
    with pytest.raises(ValueError, match="larger than the stored pairs' halves"):
        augment_pairs_torch(pairs, zeros, zeros, zeros, crop_size=32)


def test_the_crop_refuses_corners_past_the_stored_halves():
    pairs = _pairs(32, 32)
    inside, past = torch.tensor([0, 16], dtype=torch.int32), torch.tensor([0, 17],
                                                                          dtype=torch.int32)
    flips = torch.zeros(2, dtype=torch.int32)
    a, _ = augment_pairs_torch(pairs, inside, inside, flips, crop_size=16)
    assert a.shape == (2, 3, 16, 16)
    for crop_x, crop_y in ((past, inside), (inside, past), (-inside - 1, inside)):
        with pytest.raises(ValueError, match="crop corners must lie in"):
            augment_pairs_torch(pairs, crop_x, crop_y, flips, crop_size=16)


@pytest.mark.parametrize("name, content", [
    ("index.json", "[]"),
    ("index.json", '{"shards": 5}'),
    ("index.json", '{"shards": [7], "sources": []}'),
    ("index.json", '{"shards": [{"file": "shard-00000.u8", "count": "2"}], "sources": []}'),
    ("pack-state.json", '{"load_size": 20, "shards": {"shard-00000.u8": 5}}'),
    ("pack-state.json", '{"load_size": 20, "shards": []}'),
    ("pack-state.json", '{"load_size": 20, "shards": {"shard-00000.u8": {"file": 3}}}'),
    ("pack-state.json", "[1, 2]"),
], ids=["index-list", "index-shards-number", "index-shard-number", "index-count-text",
        "state-record-number", "state-shards-list", "state-file-number", "state-list"])
def test_bookkeeping_of_the_wrong_shape_repacks_those_shards(packed, capsys, name, content):
    data, out = packed
    phase = out / "train"
    good = _shard_bytes(phase)
    if name == "pack-state.json":   # an interrupted run: its state, no index yet
        (phase / "index.json").unlink()
    (phase / name).write_text(content)
    assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "2",
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert read_index(phase)["count"] == 6
    assert _shard_bytes(phase) == good
    assert not (phase / "pack-state.json").exists()


def test_a_state_record_naming_a_file_outside_the_pack_is_not_kept(packed, tmp_path, capsys):
    """A record whose file is not its own plain name would make the re-run check (and keep) a
    file elsewhere as if it were the shard."""
    data, out = packed
    phase = out / "train"
    index = json.loads((phase / "index.json").read_text())
    outside = tmp_path / "elsewhere.u8"
    outside.write_bytes((phase / "shard-00000.u8").read_bytes())
    record = dict(index["shards"][0], file=str(outside), sources=index["sources"][:2])
    (phase / "index.json").unlink()
    (phase / "shard-00000.u8").unlink()
    (phase / "pack-state.json").write_text(json.dumps(
        {"load_size": 20, "shards": {"shard-00000.u8": record}}))
    assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "2",
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert (phase / "shard-00000.u8").read_bytes() == outside.read_bytes()   # packed again
    PackedDataset(phase, Preprocess(load_size=20, crop_size=16), swap=False).read_raw(0)


def _more_sources_than_pairs(record, index):
    record["sources"] = index["sources"][:3]    # the shard holds 2


def _gray_file_outside(record, index):
    record["gray_file"] = "../outside-gray.u8"   # a good copy of its grayscale shard


@pytest.mark.parametrize("gray, edit", [(False, _more_sources_than_pairs),
                                        (True, _gray_file_outside)],
                         ids=["more-sources-than-pairs", "gray-file-outside"])
def test_a_state_record_pack_never_writes_is_not_kept(tmp_path, capsys, gray, edit):
    """A record whose shard and checksums are good but whose other fields pack never writes
    is packed again. Kept, the re-run finished (exit 0) with an index its own readers refuse
    (7 sources for 6 pairs; a grayscale file outside the pack, read and named in the index)."""
    data, out = tmp_path / "data", tmp_path / "packed"
    options = ["--load_size", "20", "--pairs-per-shard", "2", "--no-progress"] + (
        ["--gray"] if gray else [])
    assert main(["pack", "--synthetic", "6", str(data), str(out), *options]) == 0
    phase = out / "train"
    good = {path.name: path.read_bytes() for path in sorted(phase.glob("*.u8"))}
    if gray:
        (out / "outside-gray.u8").write_bytes(good["gray-00000.u8"])
    index = json.loads((phase / "index.json").read_text())
    record = dict(index["shards"][0], sources=index["sources"][:2])
    edit(record, index)
    (phase / "index.json").unlink()
    (phase / "pack-state.json").write_text(json.dumps(
        {"load_size": 20, "shards": {"shard-00000.u8": record}}))
    capsys.readouterr()
    assert main(["pack", str(data), str(out), *options]) == 0, capsys.readouterr().err
    repacked = read_index(phase)
    assert repacked["count"] == 6 and repacked["shards"][0] == index["shards"][0]
    assert {path.name: path.read_bytes() for path in sorted(phase.glob("*.u8"))} == good


def _more_pairs_than_the_shards_hold(index):
    index["count"] += 2
    index["sources"] += index["sources"][:2]


def _crc32_past_32_bits(index):
    index["shards"][0]["crc32"] += 1 << 32


@pytest.mark.parametrize("edit, problem", [
    (_more_pairs_than_the_shards_hold, r"field 'count' \(8\) disagrees with the shards' counts"),
    (_crc32_past_32_bits, r"shards\[0\]\.crc32 must be an unsigned 32-bit integer"),
], ids=["count", "crc32"])
def test_an_index_at_odds_with_its_shards_is_refused_on_opening(packed, capsys, edit, problem):
    """Refused before a pixel is read: with 8 pairs for 6 stored, --verify passed and reading
    pair 7 said the pack was rewritten while read; a 33-bit CRC blamed a good shard as
    damaged at its first read."""
    _, out = packed
    phase = out / "train"
    index = json.loads((phase / "index.json").read_text())
    edit(index)
    (phase / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=problem):
        PackedDataset(phase, Preprocess(load_size=20, crop_size=16), swap=False)
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.search(problem, err), err


def test_a_rerun_removes_only_temporary_files_of_dead_processes(packed, capsys):
    data, out = packed
    phase = out / "train"
    # another `fastp2p pack` into this OUT, still writing its shard; and a killed one's
    running = phase / f".shard-00001.u8.tmp-{os.getppid()}.u8"
    killed = phase / f".shard-00002.u8.tmp-{dead_pid()}.u8"
    for path in (running, killed):
        path.write_bytes(b"x" * 10)
    assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "2",
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert running.read_bytes() == b"x" * 10
    assert not killed.exists()


# A `fastp2p pack` that stops inside its first shard's write (its temporary file open) until
# the test creates GO; it creates STARTED when it gets there.
BLOCKED_PACK = """
import pathlib, sys, time
import fastp2p.data.pack as pack
started, go = pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
load_pair = pack.load_pair
def blocked_load_pair(*args, **kwargs):
    started.touch()
    while not go.exists():
        time.sleep(0.05)
    return load_pair(*args, **kwargs)
pack.load_pair = blocked_load_pair
from fastp2p.cli import main
sys.exit(main(["pack", sys.argv[1], sys.argv[2], "--load_size", "20", "--pairs-per-shard",
               "1", "--no-progress", "--workers", "1", "--overwrite"]))
"""


def test_a_second_pack_into_one_out_is_refused_and_the_first_finishes(packed, tmp_path,
                                                                      capsys):
    """The second run's start removed the first one's temporary files while it wrote them:
    the first died with "No such file or directory"; once that was fixed, both finished, each
    renaming its shards over the other's. Now the folder's lock refuses the second at once.
    (Run as separate processes in a folder outside the checkout, importing the fastp2p this
    test imports.)"""
    data, out = packed
    started, go = tmp_path / "started", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", BLOCKED_PACK, str(data), str(out),
                              str(started), str(go)], cwd=tmp_path,
                             env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert list((out / "train").glob(".shard-*.tmp-*"))   # its write is under way
        capsys.readouterr()
        assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "1",
                     "--no-progress", "--workers", "1", "--overwrite"]) == EXIT_IN_USE
        assert "another `fastp2p pack` is writing this folder" in capsys.readouterr().err
        assert list((out / "train").glob(".shard-*.tmp-*"))   # the first one's, left alone
    finally:
        go.touch()
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert read_index(out / "train")["count"] == 6
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 0
