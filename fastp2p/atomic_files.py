"""Replacing a file atomically: write a temporary sibling, then rename it over the target.

One implementation for every writer whose file someone else may be reading or relying on
(packed shards and their index, checkpoints, the training report's images and pages, benchmark
results): a reader sees the old file or the new one, never a torn one.

Nothing is written through a symbolic link: run folders may be shared by several users, and a
link one of them plants at a name fastp2p writes (``NAME/.lock -> ~victim/file``) must not turn
the next run's write into one outside the folder. A rename replaces the link itself, never its
target; the temporary file is created afresh (``O_EXCL | O_NOFOLLOW``) and written through the
descriptor of that creation only, never reopened by its name (another user could swap a link in
at that name meanwhile), and a name taken over while it was written is not renamed into place
(``ReplacedWhileWritten``); files written in place
(the run lock, the loss log) are opened with ``open_plain_file``, which refuses a link or
anything but a regular file with ``NotAPlainFile``; folders fastp2p makes and writes into are
refused when they are links (``refuse_linked_folder``), a run's own folder only when the link is
another user's.
"""
import errno
import os
import re
import stat
from contextlib import contextmanager
from pathlib import Path

# O_NOFOLLOW is POSIX; where it is missing (Windows) creating a symbolic link needs privileges
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
# a FIFO planted at a file's name would block an open for writing until someone reads it
_NO_BLOCK = getattr(os, "O_NONBLOCK", 0)


class NotAPlainFile(ValueError):
    """A file fastp2p writes in place is a symbolic link, a FIFO, a device or a folder (or a
    folder it writes into is a symbolic link: ``expected`` "folder")."""

    def __init__(self, path, what: str, expected: str = "plain file",
                 advice: str = "remove it and run again"):
        super().__init__(f"{path} is {what}, not a {expected}: fastp2p does not write through "
                         f"it (it would write somewhere else); {advice}")


class LinkToNothing(ValueError):
    """A folder fastp2p writes into is your own symbolic link to a path that does not exist (a
    disk not mounted, say): mkdir would fail with a bare "File exists"."""


def refuse_linked_folder(folder, *, advice: str = "remove it and run again") -> None:
    """NotAPlainFile if ``folder`` (a run's folder, or one fastp2p makes in it, e.g. web/) is a
    symbolic link another user made: a link planted in a shared folder would send every file
    written there elsewhere, replacing files of the same names.

    A link owned by the user this process runs as is followed: its user may keep a run, its
    web page or its results on another disk, and another user cannot make a link that is
    owned by you (a link's owner is whoever made it). Where there are no user ids (Windows),
    every link is refused. Your own link to nothing raises LinkToNothing."""
    try:
        info = os.lstat(folder)
    except OSError:   # nothing there yet (or unreadable: the write will say so)
        return
    if not stat.S_ISLNK(info.st_mode):
        return
    if info.st_uid == getattr(os, "geteuid", lambda: None)():
        if not os.path.exists(folder):
            raise LinkToNothing(f"{folder} is a symbolic link to {os.readlink(folder)}, which "
                                "does not exist: mount the disk it points at, or fix or remove "
                                "the link")
        return
    raise NotAPlainFile(folder, f"a symbolic link (to {os.readlink(folder)}), made by another "
                        f"user (uid {info.st_uid})", "folder", advice)


def _refusal(path) -> NotAPlainFile | None:
    """NotAPlainFile for what is at ``path`` if it is not a regular file, else None."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return NotAPlainFile(path, f"a symbolic link (to {os.readlink(path)})")
    if not stat.S_ISREG(mode):
        return NotAPlainFile(path, "a folder" if stat.S_ISDIR(mode) else "a special file")
    return None


def refuse_unless_plain_file(path) -> None:
    """NotAPlainFile if something other than a regular file is at ``path`` (nothing there is
    fine): the check a command makes before it changes anything, for a file it will write in
    place later."""
    refusal = _refusal(path)
    if refusal is not None:
        raise refusal


def open_plain_file(path, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags, mode)`` that follows no symbolic link and opens nothing but a
    regular file: raises NotAPlainFile (a ValueError) for a link, FIFO, device or folder at
    ``path``, OSError for the rest (e.g. PermissionError). Also ``open``'s ``opener``:
    ``open(path, "a", opener=open_plain_file)`` (a link is refused before O_TRUNC applies)."""
    try:
        fd = os.open(path, flags | _NO_FOLLOW | _NO_BLOCK | os.O_CLOEXEC, mode)
    except OSError as err:
        refusal = _refusal(path) if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR,
                                                  errno.EMLINK) else None
        if refusal is not None:
            raise refusal from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refusal(path) or NotAPlainFile(path, "a special file")
    return fd


def create_empty_file(path, *, exclusive: bool) -> None:
    """An empty file at ``path`` that its owner alone may read and write (0o600; a name claimed,
    a mark left): with ``exclusive``, FileExistsError where anything is there (a symbolic link
    too, never followed); without, a file there is kept as it is (opened, not truncated)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else 0)
    os.close(os.open(path, flags, 0o600))


def temporary_sibling(path: Path) -> Path:
    """``.NAME.tmp-PID.SUFFIX`` beside ``path``: hidden, unique per process, and ending in the
    target's suffix so writers that pick a format by extension (Pillow, matplotlib) still do."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


# temporary_sibling's names; and NAME.tmp-PID, which older fastp2p versions' packs left
_TEMPORARY = re.compile(r"^\.?.+\.tmp-(\d+)(\.[^.]*)?$")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (any user's); True where that cannot be told. A zombie (a
    killed process its parent, or init, has not reaped yet) runs nothing: os.kill(pid, 0) still
    finds it, and a pack resumed at once kept the temporary shards of workers killed with it."""
    if os.name == "nt":  # os.kill would terminate the process there: assume it is alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether Linux's /proc says ``pid`` is a zombie (False where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows
            # the last ')'
            return stat_file.read().rpartition(b")")[2].split()[:1] == [b"Z"]
    except OSError:
        return False


def left_by_dead_process(path) -> bool:
    """Whether ``path`` is a ``temporary_sibling`` whose process no longer runs: a leftover of
    a killed write, safe to remove (a live process's may be renamed into place any moment)."""
    match = _TEMPORARY.match(Path(path).name)
    return match is not None and not process_alive(int(match.group(1)))


def remove_left_by_dead_processes(folder, pattern: str = ".*.tmp-*") -> None:
    """Remove the ``temporary_sibling`` files in ``folder`` whose process no longer runs: what
    a write killed before its rename left (a live process's are left alone). ``pattern``: the
    names to look at (a glob), e.g. ``"*.tmp-*"`` for older versions' ``NAME.tmp-PID`` too.
    Only regular files: a write leaves nothing else, so a folder or a link of that name is
    someone's own, and unlinking a folder would fail. Nothing through a ``folder`` that is
    another user's symbolic link (``refuse_linked_folder``): fastp2p writes nothing there, so
    nothing there is its leftover (a run with no web page still cleans NAME/web)."""
    try:
        refuse_linked_folder(folder)
    except ValueError:   # NotAPlainFile, LinkToNothing: not a folder fastp2p writes into
        return
    for leftover in Path(folder).glob(pattern):
        if _is_regular_file(leftover) and left_by_dead_process(leftover):
            leftover.unlink(missing_ok=True)


def _is_regular_file(path) -> bool:
    """Whether ``path`` itself (not a link's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class ReplacedWhileWritten(OSError):
    """What was created at a temporary file's name was replaced (by a link, say) before it was
    renamed into place: nothing is renamed, and what was written is lost."""


class TemporaryFile:
    """``temporary_sibling(path)``, created afresh and open for writing: ``file``, a binary
    file object on the descriptor of that creation. Write through ``file`` only, never by
    the name: in a shared folder another user can swap a link in at the name after it was
    created, and a writer that reopened it would write into the link's target. Whatever was
    at the name before (a file a killed process of the same pid left, a link planted there)
    is removed first. It takes the permission bits and group of the file it replaces where that
    is this user's (``chmod 640`` on a loss log, ``chgrp team`` and ``chmod 660`` on a run's
    files), which a file created afresh would otherwise lose to the default mode; created
    readable by its owner alone until then, so no one opens it meanwhile under wider bits."""

    def __init__(self, path):
        self.target = Path(path)
        self.path = temporary_sibling(self.target)
        kept = _kept_permissions(self.target)
        try:
            self.path.unlink(missing_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW
                         | os.O_CLOEXEC, 0o666 if kept is None else 0o600)
        except OSError as err:   # named by the file it was to replace: the hidden temporary
            err.filename = str(self.target)   # name means nothing to the user
            raise
        self._created = _identity(os.fstat(fd))
        self.file = os.fdopen(fd, "wb")
        if kept is not None:
            _set_permissions(fd, *kept)

    def rename_into_place(self) -> None:
        """Rename the written file over ``target``: ReplacedWhileWritten if its name holds
        something else now (renaming that would put, say, another user's link at ``target``)."""
        try:
            now = _identity(os.lstat(self.path))
        except FileNotFoundError:
            now = None
        if now != self._created:
            raise ReplacedWhileWritten(errno.EEXIST, "replaced by something else while fastp2p "
                                       "wrote it; nothing was renamed into place", str(self.path))
        os.replace(self.path, self.target)


def _identity(info: os.stat_result) -> tuple:
    return info.st_dev, info.st_ino


def _kept_permissions(path: Path) -> tuple[int, int] | None:
    """(read/write/execute bits, group) of the regular file at ``path`` if it is this user's;
    None otherwise: nothing there, a link (whose own bits, 0o777, are no one's choice), or a
    file another user put at a name fastp2p writes in a shared folder (its bits, say 0o666,
    are not this user's choice for what fastp2p writes). Never setuid, setgid or sticky bits."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != getattr(os, "geteuid", lambda: None)():
        return None
    return stat.S_IMODE(info.st_mode) & 0o777, info.st_gid


def _set_permissions(fd: int, mode: int, group: int) -> None:
    """``group`` and ``mode`` on the file open at ``fd`` (through the descriptor: never by a
    name another user could swap a link in at), where the platform and file system allow it
    (one that keeps no modes, FAT or some network shares, refuses: the file stays its owner's
    alone). Where the file cannot be given ``group`` (the user is no longer in it), the group
    bits are dropped: they were that group's, not the one the file has."""
    try:
        if os.fstat(fd).st_gid != group:
            try:
                os.fchown(fd, -1, group)
            except OSError:
                mode &= ~0o070
        os.fchmod(fd, mode)
    except (AttributeError, OSError):  # AttributeError: no os.fchmod / fchown (Windows)
        pass


def fsync_directory(folder: Path) -> None:
    """Make a rename inside ``folder`` durable, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(path, *, durable: bool = True):
    """Yield a binary file to write (``TemporaryFile``: on a fresh temporary sibling of
    ``path``); when the block ends without error, rename it over ``path``. ``durable``: fsync
    the file before and its folder after the rename, so a power loss keeps the old or the new
    file. On any error the temporary file is removed and ``path`` is left as it was; an
    OSError of a write names ``path`` (``naming_the_file``: a full disk at a pack's
    index.json was said of the OUT folder). The yielded file names it at each write and
    flush, so of several blocks open at once (a --gray shard and its gray shard) the error
    names the file written, not the innermost block's; the block names what else fails
    naming no file (Pillow writes through the descriptor itself)."""
    path = Path(path)
    temp = TemporaryFile(path)
    try:
        with naming_the_file(path):
            try:
                yield _NamingWrites(temp.file, path)
            except BaseException:
                _close_discarded(temp.file)
                raise
            with temp.file:
                if durable:
                    temp.file.flush()
                    os.fsync(temp.file.fileno())
        temp.rename_into_place()
    finally:
        temp.path.unlink(missing_ok=True)   # nothing there after the rename
    if durable:
        fsync_directory(path.parent)


class _NamingWrites:
    """``file`` (a binary file) whose write and flush errors name ``path``: named at the
    write, since an enclosing ``naming_the_file`` of another file would name it first."""

    def __init__(self, file, path: Path):
        self._file, self._path = file, path

    def write(self, data):
        with naming_the_file(self._path):
            return self._file.write(data)

    def flush(self) -> None:
        with naming_the_file(self._path):
            self._file.flush()

    def __getattr__(self, name):
        return getattr(self._file, name)


def _close_discarded(file) -> None:
    """Close a file whose content is thrown away: its buffer's write failing too (a full
    disk) must not replace the error that ended its block, perhaps another file's."""
    try:
        file.close()
    except OSError:
        pass


def replace_text(path, text: str, *, durable: bool = True) -> None:
    """``text`` as UTF-8 into ``path``, through ``replacing``."""
    with replacing(path, durable=durable) as file:
        file.write(text.encode("utf-8"))


@contextmanager
def naming_the_file(path):
    """An OSError of a write, flush or fsync (e.g. a full disk) names no file, so a report of
    it would say "None: No space left on device": inside this block it names ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise
