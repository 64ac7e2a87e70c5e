"""The pack folder's lock (`.pack.lock`) between `fastp2p pack` and what reads the pack:

- pack opened the lock file through a symbolic link planted at its name (creating a file at
  the link's target); it now refuses the link in one line naming it;
- a training reading a pack that a `fastp2p pack` was still writing was told to run that
  command again (which the running pack's lock refuses); it is now told a pack is writing it
  (its pid) and to wait.
"""
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

from fastp2p.cli import main
from fastp2p.data import DataError, create_dataset
from fastp2p.data.folder_lock import LOCK_NAME
from fastp2p.data.packed import INDEX_NAME, STATE_NAME
from helpers.data_helpers import data_args, make_aligned, tiny_pack_args

PAIRS = 6


@pytest.fixture
def packed(tmp_path):
    """(DATAROOT, OUT) of a pack of PAIRS pairs, two per shard."""
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=PAIRS)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "2")) == 0
    return data, out


def _open(out):
    return create_dataset(data_args(out, "--load_size", "16", "--crop_size", "16"), "train")


@contextmanager
def _other_process_holding(path, how):
    """A Python process that holds ``path``'s flock (``how``: "LOCK_EX" as a running pack)
    until the block ends; yields its pid."""
    hold = (f"import fcntl, os\nfd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
            f"fcntl.flock(fd, fcntl.{how})\n")
    child = subprocess.Popen([sys.executable, "-c", hold + "print('held', flush=True)\ninput()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=path.parent.parent)
    try:
        assert child.stdout.readline() == "held\n"
        yield child.pid
    finally:
        child.communicate("")


def test_a_symbolic_link_at_the_lock_file_is_refused_not_followed(tmp_path, capsys):
    data = tmp_path / "data"
    make_aligned(data, count=2)
    target = tmp_path / "victim"
    (tmp_path / "out" / "train").mkdir(parents=True)
    (tmp_path / "out" / "train" / LOCK_NAME).symlink_to(target)
    capsys.readouterr()
    assert main(tiny_pack_args(data, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert not os.path.lexists(target)
    assert LOCK_NAME in err and "symbolic link" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "train" / "index.json").exists()


def test_a_pack_being_written_now_is_named_so_with_its_pid_not_as_unfinished(packed,
                                                                             capsys):
    _, out = packed
    phase = out / "train"
    (phase / INDEX_NAME).unlink()       # as a running pack leaves it: state file, no index
    (phase / STATE_NAME).write_text('{"load_size": 16, "shards": {}}')
    with _other_process_holding(phase / LOCK_NAME, "LOCK_EX") as pid:
        with pytest.raises(DataError) as error:
            _open(out)
        capsys.readouterr()
        assert main(["pack", "--verify", str(out), "--no-progress"]) == 1
        verify_err = capsys.readouterr().err
    for message in (str(error.value), verify_err):
        assert f"a `fastp2p pack` is writing this pack now (pid {pid}); wait for it" in message
        assert "unfinished" not in message and str(phase) in message
    # its holder gone, it is an unfinished pack again
    with pytest.raises(DataError, match="unfinished pack"):
        _open(out)

