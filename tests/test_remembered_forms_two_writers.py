"""Two processes remembering new CPU transposed convolution forms at once (QA concurrent 3):
each merges what the other wrote, under a lock, so no entry is lost (the second writer's entry,
written between the first one's read and its replace, was dropped). A file another user left
unreadable (written under a umask of 077) is not replaced by what this user measured, and that
is said once, in one line on stderr, and so is a lock file beside it that this user may not
read."""
import fcntl
import os
import threading
from pathlib import Path

import pytest

from fastp2p.ops import remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entries():
    return remembered_forms._read(remembered_forms.path())[remembered_forms.machine()]


def test_a_writer_between_the_read_and_the_replace_loses_nothing(cache, monkeypatch):
    # the second writer waits for the first's lock however slow a loaded machine makes the
    # first: past the wait its put would be dropped, as it is meant to be (not this test's case)
    monkeypatch.setattr(remembered_forms, "LOCK_WAIT_SECONDS", 600.0)
    first, second = RememberedForms(), RememberedForms()   # as two processes' (own open files)
    first.get(("primed",))   # its one read of the file, before the put's merge
    real_read_json, real_flock = remembered_forms.read_json, fcntl.flock
    second_went = threading.Event()   # the second writer wrote, or went for the lock to write

    def second_writes():
        second.put(("second layer",), "phases")
        second_went.set()
    second_writer = threading.Thread(target=second_writes)

    def flock(fd, operation):
        if threading.current_thread() is second_writer:
            second_went.set()
        return real_flock(fd, operation)

    def read_json(*args, **kwargs):
        try:
            return real_read_json(*args, **kwargs)   # raises where there is no file yet
        finally:
            # after the first writer's merge read, the second writes, before the first replaces
            if threading.current_thread() is not second_writer and second_writer.ident is None:
                second_writer.start()
                second_went.wait(timeout=60)
    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(remembered_forms, "read_json", read_json)
    first.put(("first layer",), "onednn")
    second_writer.join()
    assert sorted(_entries().values()) == ["onednn", "phases"]


def test_a_file_this_user_cannot_read_is_not_replaced_and_that_is_said_once(cache, monkeypatch,
                                                                             capsys):
    """Simulated: root reads any file, so reading it is refused as it is for another user of a
    file written 0600."""
    RememberedForms().put(("another user's layer",), "gemm")
    theirs = remembered_forms.path().read_bytes()
    real_read_json = remembered_forms.read_json

    def read_json(file, *args, **kwargs):
        if file == remembered_forms.path():
            raise PermissionError(13, "Permission denied", str(file))
        return real_read_json(file, *args, **kwargs)
    monkeypatch.setattr(remembered_forms, "read_json", read_json)
    forms = RememberedForms()
    capsys.readouterr()
    forms.put(("a layer",), "onednn")
    forms.put(("another layer",), "phases")
    assert remembered_forms.path().read_bytes() == theirs
    assert forms.get(("a layer",)) == "onednn"   # this process still takes what it measured
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1   # one line: a warning was two (where, and the put's source line)
    assert said[0].startswith(f"fastp2p: {remembered_forms.path()}: not readable to you")
    assert "FASTP2P_CACHE" in said[0]


def test_a_lock_file_this_user_cannot_read_is_said_once(cache, monkeypatch, capsys):
    """Simulated as above: another user's forms file made readable to all (as the warning
    advises), its lock file still 0600 from a umask of 077. The lock cannot be opened, so
    nothing measured here is added: that was silent, and info said the forms were remembered."""
    RememberedForms().put(("another user's layer",), "gemm")
    lock = remembered_forms.path().with_name(".cpu_deconv_forms.json.lock")
    real_open, real_access = remembered_forms.open_plain_file, os.access

    def open_plain_file(path, *args):
        if Path(path) == lock:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args)
    monkeypatch.setattr(remembered_forms, "open_plain_file", open_plain_file)
    monkeypatch.setattr(os, "access",
                        lambda path, mode: Path(path) != lock and real_access(path, mode))
    forms = RememberedForms()
    capsys.readouterr()
    forms.put(("a layer",), "onednn")
    forms.put(("another layer",), "phases")
    assert capsys.readouterr().err == f"fastp2p: {remembered_forms.why_not_remembered()}\n"
    assert remembered_forms.why_not_remembered().startswith(f"{lock}: not readable to you")
