"""The CPU transposed convolutions' measured forms (fastp2p.ops.conv_transpose), remembered
between processes in one JSON file, ``cpu_deconv_forms.json`` in fastp2p's cache folder
($FASTP2P_CACHE, default ~/.cache/fastp2p), so that only a machine's first process pays for
timing them (most of a U-Net-256's first CPU forward: benchmarks/NOTES.md, "Remembering the
measured forms").

A choice holds for one machine and software: the file keeps one section per CPU model, torch
build and fastp2p build (its version and fastp2p.build_fingerprint: the version number alone
stays the same while the code changes; a build's write drops the sections of the same CPU model
and torch build under other fastp2p builds), and in it one entry per choice key (layer shape, input
size class, thread count, the forms that applied). The file is replaced atomically and merged
with what another process wrote meanwhile: read, merged and replaced under an exclusive flock
of the lock file beside it (``.cpu_deconv_forms.json.lock``), so that two processes writing at
once keep each other's entries. A missing or malformed file (not JSON, nested too deep to parse,
of another format, larger than MAX_FILE_BYTES) reads as empty, and a folder that cannot be
written or cannot be found (no FASTP2P_CACHE and no home folder) is left alone: timing again is
the fallback, never an error. A file this user may not read (another user's, written under a
umask of 077) reads as empty too, but is not replaced (that would drop its entries), and a lock
file this user may not read lets nothing be added. In a folder with the sticky bit (a shared
FASTP2P_CACHE of mode 1777) another user's file cannot be replaced, nor, where
fs.protected_regular is set, another user's lock file opened. Where something other than the
permission bits (an immutable attribute, an ACL, a security module) refuses a write in a folder
this user may write, the line names the file refused (the lock file, the temporary file, or
the file its rename would replace) and what was being done to it. One line on stderr says any
of these, once per process, and so does `fastp2p info` (but for the lock file in a sticky
folder, and for refusals past the permission bits, which only a write meets).
Deleting the file makes the next process measure afresh.
"""
import contextlib
import fcntl
import functools
import json
import os
import stat
import sys
import time
from pathlib import Path

import torch

from fastp2p.atomic_files import open_plain_file, replace_text, temporary_sibling
from fastp2p.build_fingerprint import version_line
from fastp2p.cache_folder import cache_root
from fastp2p.cpu_info import cpu_model
from fastp2p.json_files import read_json

FILE_NAME = "cpu_deconv_forms.json"
# 2: forms measured with the packed weights packed for the input's size (fastp2p.ops.onednn_packed);
# format 1's were measured with packings that could make oneDNN reorder on every call, so they
# are measured again.
_FORMAT = 2
# What reading or writing the file may raise: unreadable or unwritable (OSError), not UTF-8 or
# not JSON (ValueError; read_json's for nesting too deep to parse), sections nested deeper than
# json's recursion limit to write back (RecursionError).
_UNUSABLE = (OSError, ValueError, RecursionError)
# The most of the file that is read (FileTooLarge, a ValueError, past it: read as unusable, and
# replaced by the next write): a section is a few KiB, one per machine, torch build and fastp2p
# build; a 3 GB file was read whole (3.5 GB of memory, then MemoryError).
MAX_FILE_BYTES = 16 << 20
# How long a write waits for another process's lock: the holder reads and replaces a file of a
# few KiB; one stopped while holding it (SIGSTOP, a suspended job) costs this process the write
# (its forms measured again by the next process), not its inference.
LOCK_WAIT_SECONDS = 2.0


def path() -> Path:
    """The file; fastp2p.cache_folder.NoCacheFolder (an OSError) where there is no cache
    folder."""
    return cache_root() / FILE_NAME


def why_not_remembered() -> str | None:
    """Why the measured forms are not remembered (for `fastp2p info`): there is no cache folder,
    or it cannot be made or written by this user, so each process measures afresh, or the file
    is there but this user may not read it, so ``put`` leaves it as it is, or it is another
    user's in a sticky folder, so ``put`` may not replace it; None where they are, in
    ``path()``. (A lock file that fs.protected_regular keeps this user from opening is said by
    ``put`` only.)"""
    try:
        file = path()
    except OSError as error:   # NoCacheFolder
        return str(error)
    if not _can_write_in(file.parent):
        return f"{file.parent} cannot be made or written; set FASTP2P_CACHE to a writable folder"
    unreadable = _unreadable(file)
    if unreadable is not None:
        return _not_readable(unreadable, file)
    if os.geteuid() != 0 and _theirs_in_sticky_folder(file):   # root replaces any file
        return _theirs_not_replaceable(file)
    return None


def _unreadable(file: Path) -> Path | None:
    """``file``, or its lock file, where it is there but this user may not read it: ``put``
    then adds nothing (the lock is opened for reading, and made under the owner's umask)."""
    try:
        _read(file)
    except PermissionError:
        return file
    lock = _lock_file(file)
    if os.path.lexists(lock) and not os.access(lock, os.R_OK):
        return lock
    return None


def _not_readable(unreadable: Path, file: Path) -> str:
    """What ``unreadable`` (the forms ``file`` or its lock file), there but not readable to this
    user, means, and what to do."""
    return (f"{unreadable}: not readable to you (another user's, written under a umask that "
            "keeps others out), so the CPU transposed convolutions' forms measured here are not "
            f"added to {file.name}; ask its owner to chmod a+r it, or set FASTP2P_CACHE to a "
            "folder of your own")


def _why_not_added(file: Path, refusal: PermissionError) -> str | None:
    """What a write of ``file`` (or of its lock file) that ``refusal`` stopped means: a file
    this user may not read, or one this user may not replace though the folder lets this user
    write (another user's in a sticky folder, or one that something besides the permission bits
    keeps from this user); None for a folder this user may not write (a cache another user
    shares read-only, its file readable: measured again, as for a full disk)."""
    unreadable = _unreadable(file)
    if unreadable is not None:
        return _not_readable(unreadable, file)
    if not _can_write_in(file.parent):
        return None
    refused, doing = _what_was_refused(file, refusal)
    if _theirs_in_sticky_folder(refused):
        return _theirs_not_replaceable(refused)
    return _refused_past_the_bits(refused, doing, refusal.strerror)


def _what_was_refused(file: Path, refusal: PermissionError) -> tuple[Path, str]:
    """(the file ``refusal`` refused, what was being done to it) in a write of ``file``:
    rename(2)'s refusal names the temporary file, then ``file``, which it would replace; the
    temporary file's creation names ``file`` alone (atomic_files.TemporaryFile: its hidden
    name means nothing to a user), so it is named again here; the lock file's open names it."""
    if refusal.filename2:
        return Path(refusal.filename2), f"replacing it with {Path(refusal.filename).name}"
    if refusal.filename is None or Path(refusal.filename) == file:
        return temporary_sibling(file), f"making it, to replace {file.name} with it"
    return Path(refusal.filename), "opening it"


def _refused_past_the_bits(refused: Path, doing: str, strerror: str) -> str:
    """What a refusal of ``refused`` (``doing``: what was being done to it) that the permission
    bits do not explain means (its folder lets this user write, and no sticky bit keeps another
    user's file from this user): an attribute, an ACL or a security module refuses it, which
    no owner's removing a file would lift (a temporary file's name may not even exist)."""
    sticky = refused.parent.stat().st_mode & stat.S_ISVTX
    bit = "its sticky bit does not keep this file from you" if sticky else "has no sticky bit"
    return (f"{refused}: {strerror} {doing}, though {refused.parent} lets you write in it and "
            f"{bit}: something other than the permission bits refuses it (an immutable "
            "attribute, an ACL, a security module such as SELinux), so the CPU transposed "
            "convolutions' forms measured here are not remembered (each process measures them "
            "again); lift that, or set FASTP2P_CACHE to a folder of your own")


def _theirs_in_sticky_folder(file: Path) -> bool:
    """Whether ``file`` is another user's in a folder with the sticky bit that is not this
    user's either: rename(2) over it is refused, and so (where fs.protected_regular is set) is
    an O_CREAT open of it, to all but a process that may change any file (root's: CAP_FOWNER)."""
    try:
        folder, there = file.parent.stat(), file.lstat()
    except OSError:
        return False
    return (bool(folder.st_mode & stat.S_ISVTX)
            and os.geteuid() not in (there.st_uid, folder.st_uid))


def _theirs_not_replaceable(refused: Path) -> str:
    """What a forms file or lock file this user may not replace, another user's in a sticky
    folder, means, and what to do."""
    return (f"{refused}: another user's, in a folder with the sticky bit (mode 1777, as a shared "
            "FASTP2P_CACHE), which keeps it from other users' writes, so the CPU transposed "
            "convolutions' forms measured here are not remembered (each process measures them "
            "again); ask its owner to remove it, or set FASTP2P_CACHE to a folder of your own")


def _can_write_in(folder: Path) -> bool:
    """Whether this user may write in ``folder``, or make it: its nearest existing folder or
    parent is a folder this user may write in and enter (access(2): a read-only file system
    too)."""
    existing = next((candidate for candidate in (folder, *folder.parents)
                     if os.path.lexists(candidate)), None)
    return (existing is not None and existing.is_dir()
            and os.access(existing, os.W_OK | os.X_OK))


@functools.cache
def machine() -> str:
    """This file's section for the running process: CPU model, torch build, fastp2p build."""
    return f"{_software()} | {version_line()}"


def _software() -> str:
    """The section key's part before the fastp2p build: sections that share it are one
    machine's under other fastp2p builds, replaced by this build's when it writes (an editable
    install makes a build of every edit: the file would keep one section of each)."""
    return f"{cpu_model()} | torch {torch.__version__}"


class RememberedForms:
    """``get``/``put`` of measured forms by choice key, backed by the file at ``path()`` (read
    once per path; what ``get`` returns is the file's word: the caller checks it)."""

    def __init__(self):
        self._read_from, self._forms = None, {}
        self._said_why_not_added = False

    def get(self, key: tuple):
        self._read_if_moved()
        return self._forms.get(repr(key))

    def put(self, key: tuple, form: str) -> None:
        self._read_if_moved()
        self._forms[repr(key)] = form
        try:
            file = path()
        except OSError:
            return   # no cache folder, or one this user may not look into: measured again
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            with _locked(file):
                _merge_into(file, self._forms)
        except PermissionError as refusal:
            self._say_once(_why_not_added(file, refusal))
        except _UNUSABLE:
            # A read-only or a full cache folder, or another machine's section nested too deep
            # to write back: measured again by the next process.
            pass

    def _say_once(self, why: str | None) -> None:
        """Say ``why`` nothing measured here is remembered, in one line on stderr (a warning
        was two: where, and the source line of the call), once per process."""
        if why is not None and not self._said_why_not_added:
            self._said_why_not_added = True
            print(f"fastp2p: {why}", file=sys.stderr)

    def _read_if_moved(self) -> None:
        try:
            file = path()
        except OSError:
            file = None  # no cache folder: nothing to read (what this process measured stays)
        if file != self._read_from:
            self._read_from = file
            try:
                self._forms = {} if file is None else dict(_read(file).get(machine(), {}))
            except PermissionError:   # another user's file: measured here (put says so)
                self._forms = {}


def _merge_into(file: Path, forms: dict) -> None:
    """Replace ``file`` with its sections and ``forms`` in this build's section (the caller
    holds the lock: what another process wrote is read here, not before). PermissionError where
    the file is there but not readable: replacing it would drop its entries."""
    sections = _read(file)
    mine = {**sections.get(machine(), {}), **forms}
    sections = {name: entries for name, entries in sections.items()
                if not name.startswith(f"{_software()} | ")}
    sections[machine()] = mine
    replace_text(file, json.dumps({"format": _FORMAT, "machines": sections}, indent=1),
                 durable=False)


def _lock_file(file: Path) -> Path:
    return file.with_name(f".{file.name}.lock")


@contextlib.contextmanager
def _locked(file: Path):
    """Hold an exclusive flock of the lock file beside ``file`` for the block (``_lock``).
    Raises OSError where the lock file cannot be opened or made (PermissionError: another
    user's, unreadable, or a folder this user may not write)."""
    fd = open_plain_file(_lock_file(file), os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        _lock(fd, file)
        yield
    finally:
        os.close(fd)   # lets go of the lock


def _lock(fd: int, file: Path) -> None:
    """Lock ``fd`` exclusively, waiting up to LOCK_WAIT_SECONDS for another process that holds
    it (TimeoutError, an OSError, past that). On a file system without locks (some NFS or FUSE
    mounts) nothing is locked and the write goes on, as it always did."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{file}: locked by another process") from None
            time.sleep(0.01)
        except OSError:
            return   # no locks on this file system


def _read(file: Path) -> dict:
    """The file's sections ({machine: {key: form}}), or {} where it is missing or unusable.
    PermissionError where it is there but this user may not read it."""
    try:
        content = read_json(file, max_bytes=MAX_FILE_BYTES)
    except PermissionError:
        raise
    except _UNUSABLE:
        return {}
    if not (isinstance(content, dict) and content.get("format") == _FORMAT
            and isinstance(content.get("machines"), dict)):
        return {}
    return {name: forms for name, forms in content["machines"].items()
            if isinstance(forms, dict)}
