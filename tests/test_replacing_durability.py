"""``atomic_files.replacing``: a durable replacement fsyncs the new file before its rename and the
folder after it, so a power loss keeps the old file or the new one, whole; a non-durable one (the
views of a run: pages, plots, options) costs no fsync. Only a power loss shows a missing fsync,
so the order of the calls is what these tests read (Linux: /proc/self/fd names what an fd is)."""
import os
import sys

import pytest

from fastp2p import atomic_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/fd to name what is fsynced")


def _recorded(monkeypatch):
    """os.fsync and os.replace, recorded in order (what each fsync's fd names), then done."""
    real_fsync, real_replace, events = os.fsync, os.replace, []
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(
        ("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda source, target: events.append(
        ("rename", str(source), str(target))) or real_replace(source, target))
    return events


def test_a_durable_replacement_syncs_the_file_before_its_rename_and_the_folder_after(
        tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    events, new = _recorded(monkeypatch), os.urandom(64)
    temp = atomic_files.temporary_sibling(path)
    with atomic_files.replacing(path) as file:
        file.write(new)
    assert events == [("fsync", str(temp)), ("rename", str(temp), str(path)),
                      ("fsync", str(tmp_path))]
    assert path.read_bytes() == new


def test_a_replacement_that_is_not_durable_syncs_nothing(tmp_path, monkeypatch):
    path = tmp_path / "index.html"
    events = _recorded(monkeypatch)
    temp = atomic_files.temporary_sibling(path)
    with atomic_files.replacing(path, durable=False) as file:
        file.write(os.urandom(64))
    assert events == [("rename", str(temp), str(path))]
    assert path.stat().st_size == 64
