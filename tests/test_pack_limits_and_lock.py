"""`fastp2p pack` and `pack --verify` at their edges:

- two packs into one folder at once: the second is refused at once (both used to succeed, each
  renaming its shards over the other's);
- an index whose sizes overflow 64-bit arithmetic passed the shard-size check (numpy's product
  wrapped to the real file size) and `--verify` called it OK; sizes are now bounded and
  multiplied as Python ints;
- `--verify` checks the CRC32 that training checks, not only the SHA-256;
- --load_size out of range is an option error, and running out of memory is one line;
- an index of another format version says what to do about it, and a folder in place of a
  shard is named by the re-run, and so are shards whose index.json is gone.
"""
import fcntl
import json
import os

import pytest

import fastp2p.data.pack as pack_module
from fastp2p.cli import main
from fastp2p.command_errors import EXIT_IN_USE
from fastp2p.data import DataError, create_dataset
from fastp2p.data.folder_lock import LOCK_NAME
from helpers.data_helpers import data_args, synthetic_pack


def _edit_index(phase_dir, **fields):
    path = phase_dir / "index.json"
    index = json.loads(path.read_text())
    index.update(fields)
    path.write_text(json.dumps(index))


def test_a_pack_into_a_folder_another_pack_is_writing_is_refused(tmp_path, capsys):
    """With exit code 1, a failure's, where train and test refused so with EXIT_IN_USE (75):
    a job script could not tell a pack to retry later."""
    data, out = synthetic_pack(tmp_path, pairs=4)
    before = {p.name: p.read_bytes() for p in (out / "train").glob("*")}
    fd = os.open(out / "train" / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)      # as a running `fastp2p pack` holds it
        capsys.readouterr()
        assert main(["pack", str(data), str(out), "--overwrite", "--load_size", "24",
                     "--no-progress", "--workers", "1"]) == EXIT_IN_USE
        assert "another `fastp2p pack` is writing this folder" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in (out / "train").glob("*")} == before
    finally:
        os.close(fd)
    # the holder gone, the same command runs
    assert main(["pack", str(data), str(out), "--overwrite", "--load_size", "24",
                 "--no-progress", "--workers", "1"]) == 0


def test_an_index_whose_sizes_overflow_64_bits_is_refused_by_verify(tmp_path, capsys):
    _, out = synthetic_pack(tmp_path, pairs=4)
    # 6 * side**2 wraps, in int64, to 6 * 20**2: the real shards' size per pair
    side = 20 + 2 ** 62
    _edit_index(out / "train", load_size=side, height=side, width=side)
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    assert "'load_size' must be <= 32768" in capsys.readouterr().err


def test_verify_checks_the_crc32_training_checks(tmp_path, capsys):
    _, out = synthetic_pack(tmp_path, pairs=4)
    index = json.loads((out / "train" / "index.json").read_text())
    index["shards"][1]["crc32"] ^= 1
    (out / "train" / "index.json").write_text(json.dumps(index))
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "shard-00001.u8: checksum does not match the index" in err


@pytest.mark.parametrize("size, error", [("0", ">= 1"), ("32769", "<= 32768"),
                                         ("100000", "<= 32768")])
def test_a_load_size_out_of_range_is_an_option_error(tmp_path, capsys, size, error):
    assert main(["pack", str(tmp_path / "data"), str(tmp_path / "out"), "--load_size", size]) == 2
    # the words train says it in
    assert f"argument --load_size: must be {error}, got {size}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_running_out_of_memory_is_one_line_that_says_what_to_lower(tmp_path, capsys,
                                                                   monkeypatch):
    data, out = synthetic_pack(tmp_path, pairs=4)

    def out_of_memory(job):
        raise MemoryError()

    monkeypatch.setattr(pack_module, "write_shard", out_of_memory)
    capsys.readouterr()
    assert main(["pack", str(data), str(tmp_path / "again"), "--load_size", "24",
                 "--no-progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "out of memory" in err and "--workers" in err, err


@pytest.mark.parametrize("version, expected", [
    (3, "written by a newer fastp2p (this one reads version 2); upgrade fastp2p"),
    ("2", "pack format version '2', this fastp2p reads version 2; re-run `fastp2p pack"),
    (1, "pack format version 1, this fastp2p reads version 2; re-run `fastp2p pack"),
    (2.0, "pack format version 2.0, this fastp2p reads version 2; re-run `fastp2p pack"),
], ids=["newer", "a-string", "older", "a-float"])
def test_a_pack_of_another_format_version_says_what_to_do(tmp_path, capsys, version, expected):
    """A newer pack asks for a newer fastp2p, not a re-pack (its source images may be gone);
    a string version "2" read as "version 2, this fastp2p reads version 2"; a float 2.0, which
    equals 2 in Python, was read as a pack of this version."""
    _, out = synthetic_pack(tmp_path, pairs=2)
    _edit_index(out / "train", version=version)
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    assert expected in capsys.readouterr().err


def test_a_folder_in_place_of_a_shard_is_named_by_train_and_by_the_re_run(tmp_path, capsys):
    """The re-run the error suggests failed naming its own temporary file (the rename cannot
    replace a folder); now it names the folder and says to move it."""
    data, out = synthetic_pack(tmp_path, pairs=4)
    shard = out / "train" / "shard-00001.u8"
    shard.unlink()
    shard.mkdir()
    (shard / "keep.txt").write_text("not pack's")
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    assert f"{shard}: shard is not a regular file (a folder)" in capsys.readouterr().err
    assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "2",
                 "--no-progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{shard}: not a file" in err and "move it out" in err and ".tmp-" not in err
    assert (shard / "keep.txt").read_text() == "not pack's"
    shard.rename(tmp_path / "moved")
    assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "2",
                 "--no-progress", "--workers", "1"]) == 0
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 0


def test_shards_whose_index_is_gone_are_named_so_by_verify_and_by_train(tmp_path, capsys):
    """Both said there was no dataset: verify "no packed dataset here", train "no images"."""
    _, out = synthetic_pack(tmp_path, pairs=4)
    (out / "train" / "index.json").unlink()
    capsys.readouterr()
    assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
    expected = f"{out / 'train'}: pack shards without their index.json"
    assert expected in capsys.readouterr().err
    with pytest.raises(DataError, match="pack shards without their index.json"):
        create_dataset(data_args(out, "--load_size", "20", "--crop_size", "16"), "train")
