"""A cache folder several users share with the sticky bit (mode 1777, as /tmp's: a
FASTP2P_CACHE=/shared/cache): another user's forms file cannot be replaced by this user, nor
(where fs.protected_regular is set) its lock file opened, so what this user measures is not
remembered. That was silent, and `fastp2p info` said the forms were remembered there; it is one
line on stderr now, said once, and inference goes on measuring (QA stop 60's open item)."""
import errno
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from fastp2p.ops import remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms

OTHER_USER = 65534   # nobody
_ROOT = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                           reason="giving files to another user needs root")
_STICKY_REASON = ("another user's, in a folder with the sticky bit (mode 1777, as a shared "
                  "FASTP2P_CACHE), which keeps it from other users' writes")


def _not_remembered(refused: Path) -> str:
    return (f"fastp2p: {refused}: {_STICKY_REASON}, so the CPU transposed convolutions' forms "
            "measured here are not remembered (each process measures them again); ask its "
            "owner to remove it, or set FASTP2P_CACHE to a folder of your own\n")


def _shared_cache(folder: Path, owner: int, mode: int = 0o1777) -> Path:
    """``folder`` made a cache folder of ``mode`` (by default sticky, open to all) where
    ``owner`` has written the forms file and its lock file, and which is ``owner``'s too: the
    forms file's path."""
    folder.mkdir()
    folder.chmod(mode)
    os.environ["FASTP2P_CACHE"] = str(folder)
    RememberedForms().put(("another user's layer",), "gemm")
    file = remembered_forms.path()
    for written in (folder, file, file.with_name(f".{file.name}.lock")):
        os.chown(written, owner, owner)
    return file


@pytest.fixture
def shared_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))   # set back after the test
    return _shared_cache(tmp_path / "shared", OTHER_USER)


def _puts_twice() -> RememberedForms:
    forms = RememberedForms()
    forms.put(("a layer",), "onednn")
    forms.put(("another layer",), "phases")
    return forms


@_ROOT
def test_a_forms_file_that_cannot_be_replaced_is_said_once(shared_cache, monkeypatch, capsys):
    """Simulated: root replaces any file, so the rename is refused as rename(2) refuses it to
    a user who owns neither the file nor the sticky folder."""
    theirs = shared_cache.read_bytes()

    def replace_text(path, *args, **kwargs):
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(temporary), None,
                              str(path))
    monkeypatch.setattr(remembered_forms, "replace_text", replace_text)
    capsys.readouterr()
    forms = _puts_twice()
    assert capsys.readouterr().err == _not_remembered(shared_cache)
    assert shared_cache.read_bytes() == theirs
    assert forms.get(("a layer",)) == "onednn"   # this process still takes what it measured


@_ROOT
def test_a_lock_file_that_cannot_be_opened_is_said_once(shared_cache, monkeypatch, capsys):
    """Simulated as above: fs.protected_regular refuses an O_CREAT open of another user's file
    in a sticky folder, though the lock file is readable to all."""
    lock = shared_cache.with_name(".cpu_deconv_forms.json.lock")
    real_open = remembered_forms.open_plain_file

    def open_plain_file(path, *args):
        if Path(path) == lock:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args)
    monkeypatch.setattr(remembered_forms, "open_plain_file", open_plain_file)
    capsys.readouterr()
    _puts_twice()
    assert capsys.readouterr().err == _not_remembered(lock)


def test_a_cache_folder_this_user_may_not_look_into_means_measuring_again(monkeypatch):
    """Path.is_dir raises PermissionError for a folder under one this user may not enter:
    the put stopped the inference with an UnboundLocalError."""
    def cache_root():
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/root/cache")
    monkeypatch.setattr(remembered_forms, "cache_root", cache_root)
    _puts_twice()


@_ROOT
def test_info_as_root_names_the_file_root_may_replace(shared_cache):
    assert remembered_forms.why_not_remembered() is None


def _as_another_user(folder: Path, mode: int) -> dict:
    """What a process of OTHER_USER (a fork: it needs no access to this interpreter's files)
    meets putting two forms into ``folder``'s cache (of ``mode``), where root has put its own:
    what it printed on stderr, what `fastp2p info` says, and whether root's file is
    unchanged."""
    remembered_forms.machine()   # read before: the build's files may be closed to OTHER_USER
    file = _shared_cache(folder, os.geteuid(), mode)
    theirs = file.read_bytes()
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:   # pragma: no cover (the child's coverage is not collected)
        try:
            os.close(reading)
            os.setgroups([])
            os.setgid(OTHER_USER)
            os.setuid(OTHER_USER)
            sys.stderr = io.StringIO()
            _puts_twice()
            met = {"stderr": sys.stderr.getvalue(),
                   "info": remembered_forms.why_not_remembered()}
        except BaseException as error:
            met = {"error": repr(error)}
        finally:
            os.write(writing, json.dumps(met).encode())
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        met = json.loads(pipe.read())
    os.waitpid(child, 0)
    met["unchanged"] = file.read_bytes() == theirs
    return met


def _met_by_another_user(mode: int) -> tuple[dict, Path]:
    """(``_as_another_user``'s, the forms file) for a cache folder of root's of ``mode``, in a
    temporary folder open to all."""
    folder = Path(tempfile.mkdtemp(prefix="fastp2p-sticky-"))
    folder.chmod(0o755)
    try:
        if not all(os.stat(parent).st_mode & stat.S_IXOTH for parent in folder.parents):
            pytest.skip(f"{folder.parent} is closed to other users, so no second user could "
                        "reach a cache folder in it: set TMPDIR to a folder open to all")
        met = _as_another_user(folder / "cache", mode)
    finally:
        shutil.rmtree(folder)
    return met, folder / "cache" / "cpu_deconv_forms.json"


@_ROOT
def test_another_users_file_in_a_sticky_folder_is_said_once(monkeypatch):
    """Not simulated: a second user (a fork of this process that became OTHER_USER) writes
    into a sticky folder where root's forms file is."""
    monkeypatch.setenv("FASTP2P_CACHE", "unset after the test")
    met, file = _met_by_another_user(0o1777)
    # where fs.protected_regular is set, opening the lock file is refused before the rename
    refused = file.with_name(f".{file.name}.lock") if _protected_regular() else file
    assert met == {"stderr": _not_remembered(refused), "info": _not_remembered(file)[9:-1],
                   "unchanged": True}


@_ROOT
def test_a_cache_shared_read_only_is_read_and_not_added_to_without_a_line(monkeypatch):
    """A second user in a cache folder of root's it may read but not write (mode 755): what it
    measures is measured again by the next process, as for a full disk; its put says nothing
    (the refusal is the folder's, as the user can see), and `fastp2p info` says why."""
    monkeypatch.setenv("FASTP2P_CACHE", "unset after the test")
    met, file = _met_by_another_user(0o755)
    assert met == {"stderr": "", "unchanged": True,
                   "info": f"{file.parent} cannot be made or written; set FASTP2P_CACHE to a "
                           "writable folder"}


def _protected_regular() -> bool:
    try:
        return Path("/proc/sys/fs/protected_regular").read_text().strip() != "0"
    except OSError:
        return False
