"""A disk out of inodes (the files it can hold, `df -i`: HPC scratch and tmpfs limit them) fails
every new file with ENOSPC, "No space left on device", bytes to spare: it is said as such, not
as a disk to free space on (QA limits2 #1: a checkpoint said "Free disk space" with 100 MB free,
and pack's free-space check, counting bytes only, let a pack fail partway)."""
import errno
import os
from types import SimpleNamespace

import pytest

import fastp2p.inodes as inodes_module
from fastp2p.cli import main
from fastp2p.train.checkpoints import what_to_fix
from helpers.data_helpers import make_aligned, tiny_pack_args
from helpers.train_helpers import (one_line, tiny_test_argv, train_argv, train_tiny_run,
                                   write_aligned_dataset)

NO_SPACE = os.strerror(errno.ENOSPC)


def _file_system(monkeypatch, *, inodes_free, bytes_free, inodes=10_000, blocks=10_000):
    """os.statvfs as a file system of ``blocks`` 4 KiB blocks and ``inodes`` inodes says it."""
    stats = SimpleNamespace(f_files=inodes, f_ffree=inodes_free, f_favail=inodes_free,
                            f_blocks=blocks, f_bfree=bytes_free, f_bavail=bytes_free,
                            f_frsize=4096, f_bsize=4096)
    monkeypatch.setattr(inodes_module.os, "statvfs", lambda path: stats)


def _no_space(tmp_path):
    return OSError(errno.ENOSPC, NO_SPACE, str(tmp_path / "run" / "latest_net_D.pth"))


def test_a_checkpoint_on_a_disk_out_of_inodes_says_inodes(tmp_path, monkeypatch):
    _file_system(monkeypatch, inodes_free=1, bytes_free=9_000)
    advice = what_to_fix(_no_space(tmp_path))
    assert advice.startswith("Its file system has no free inodes left") and "df -i" in advice
    assert "Free disk space" not in advice


def test_a_quota_reached_says_quota(tmp_path):
    """EDQUOT, the per-user limit of bytes or files on HPC scratch (Lustre, GPFS), whose own
    counts still show inodes free: it was "Free disk space or fix the folder's permissions"."""
    advice = what_to_fix(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT),
                                 str(tmp_path / "run" / "latest_net_D.pth")))
    assert advice.startswith("A disk quota was reached") and "lfs quota" in advice, advice


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_folder_made_first_on_a_disk_out_of_inodes_says_inodes(tmp_path, monkeypatch, capsys,
                                                                 command):
    """The run folder (train) or results folder (test), made before any file: its line was the
    bare "PATH: No space left on device"."""
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    if command == "train":
        argv, made = train_argv(data, tmp_path / "ckpt"), tmp_path / "ckpt"
    else:
        argv = tiny_test_argv(data, train_tiny_run(data, tmp_path / "ckpt"), tmp_path / "res")
        made = tmp_path / "res"
    real_mkdir = os.mkdir

    def no_inode_left(path, *args, **kwargs):
        if str(path).startswith(str(made)):
            raise OSError(errno.ENOSPC, NO_SPACE, str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", no_inode_left)
    _file_system(monkeypatch, inodes_free=0, bytes_free=9_000)
    capsys.readouterr()
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"fastp2p {command}: error: {made}"), line
    assert f": {NO_SPACE}; its file system has no free inodes left" in line, line


@pytest.mark.parametrize("inodes, inodes_free, bytes_free", [
    (10_000, 5_000, 0),     # out of bytes, inodes to spare
    (10_000, 3, 2),         # both nearly gone, the bytes more so
    (0, 0, 9_000),          # a file system without an inode limit (btrfs) says 0 in all
], ids=["bytes", "both", "no-inode-limit"])
def test_a_disk_out_of_bytes_is_still_said_as_one(tmp_path, monkeypatch, inodes, inodes_free,
                                                  bytes_free):
    _file_system(monkeypatch, inodes=inodes, inodes_free=inodes_free, bytes_free=bytes_free)
    assert what_to_fix(_no_space(tmp_path)).startswith("Free disk space")


def test_a_pack_that_needs_more_inodes_than_are_free_is_refused_before_writing(tmp_path,
                                                                               monkeypatch,
                                                                               capsys):
    make_aligned(tmp_path / "data", count=4)
    out = tmp_path / "out"
    # 4 shards of 1 pair, and the state and index files: 6 inodes
    _file_system(monkeypatch, inodes_free=5, bytes_free=9_000)
    assert main(tiny_pack_args(tmp_path / "data", out, "--pairs-per-shard", "1")) == 1
    assert capsys.readouterr().err.strip() == (
        f"fastp2p pack: error: {out / 'train'}: the 4 shard files still to write and the pack's "
        "index and state need 6 inodes (files) on this file system, which has 5 free (`df -i`); "
        "delete files there or raise its inode limit, or pack to a folder on another disk")
    assert sorted(path.name for path in (out / "train").iterdir()) == [".pack.lock"]
    _file_system(monkeypatch, inodes_free=6, bytes_free=9_000)
    assert main(tiny_pack_args(tmp_path / "data", out, "--pairs-per-shard", "1")) == 0


def test_a_pack_write_on_a_disk_out_of_inodes_says_inodes(tmp_path, monkeypatch, capsys):
    import fastp2p.data.pack as pack_module

    make_aligned(tmp_path / "data", count=2)
    out = tmp_path / "out"
    shard = out / "train" / "shard-00000.u8"

    def out_of_inodes(*args, **kwargs):
        _file_system(monkeypatch, inodes_free=0, bytes_free=9_000)
        raise OSError(errno.ENOSPC, NO_SPACE, str(shard))
    monkeypatch.setattr(pack_module, "write_phase", out_of_inodes)
    assert main(tiny_pack_args(tmp_path / "data", out)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fastp2p pack: error: {shard}: {NO_SPACE}; its file system has no "
                          "free inodes left"), err
    assert err.endswith("raise its inode limit and run the same command again to resume"), err


def test_a_test_image_on_a_disk_out_of_inodes_says_inodes(tmp_path, monkeypatch):
    from fastp2p.train.triplet_writing import _why_the_images_stopped

    _file_system(monkeypatch, inodes_free=0, bytes_free=9_000)
    image = tmp_path / "images" / "0000002_fake_B.png"
    reason = _why_the_images_stopped(OSError(errno.ENOSPC, NO_SPACE, str(image)))
    assert reason.startswith(f"{image}: {NO_SPACE}; its file system has no free inodes"), reason
    assert reason.endswith("raise its inode limit, then run it again"), reason
