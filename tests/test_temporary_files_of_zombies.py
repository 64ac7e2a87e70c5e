"""A temporary file whose writer was killed but not yet reaped (a zombie: a pack's worker killed
with its group, before init reaps it) is a leftover like a dead process's: a pack resumed at once
kept two such shards (CI at 553ff68), because os.kill(pid, 0) still finds a zombie."""
import os
import sys

import pytest

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
