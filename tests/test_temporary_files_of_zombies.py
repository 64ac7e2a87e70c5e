"""A temporary file whose writer was killed but not yet reaped (a zombie: a pack's worker killed
with its group, before init reaps it) is a leftover like a dead process's: a pack resumed at once
kept two such shards (CI at 553ff68), because os.kill(pid, 0) still finds a zombie."""
import os
import sys

import pytest

from fastp2p import atomic_files
from fastp2p.atomic_files import process_alive, remove_left_by_dead_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc")


def test_a_zombie_writers_temporary_file_is_removed(tmp_path):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        while open(f"/proc/{pid}/stat", "rb").read().rpartition(b")")[2].split()[0] != b"Z":
            pass   # the child has not exited yet; it is never reaped before the check below
        temp = tmp_path / f".shard.u8.tmp-{pid}.u8"   # temporary_sibling's name in the child
        temp.write_bytes(b"half a shard")
        assert not process_alive(pid)
        remove_left_by_dead_processes(tmp_path, "*.tmp-*")
        assert not temp.exists()
    finally:
        os.waitpid(pid, 0)


def test_a_live_writers_temporary_file_stays(tmp_path):
    temp = tmp_path / f".shard.u8.tmp-{os.getpid()}.u8"
    temp.write_bytes(b"being written")
    assert process_alive(os.getpid())
    remove_left_by_dead_processes(tmp_path, "*.tmp-*")
    assert temp.exists()


def test_a_dead_writers_name_on_a_folder_or_a_link_is_left_alone(tmp_path, monkeypatch):
    """Only a regular file is a write's leftover: a folder or a link of such a name is
    someone's own (a folder's unlink would fail the pack's start, a link's would remove it)."""
    monkeypatch.setattr(atomic_files, "process_alive", lambda pid: False)
    kept = tmp_path / "kept.txt"
    kept.write_bytes(os.urandom(16))
    folder, link, leftover = (tmp_path / f".{name}.tmp-4242.u8" for name in ("a", "b", "c"))
    folder.mkdir()
    link.symlink_to(kept)
    leftover.write_bytes(os.urandom(16))
    remove_left_by_dead_processes(tmp_path, "*.tmp-*")
    assert (folder.is_dir(), link.is_symlink(), leftover.exists()) == (True, True, False)
