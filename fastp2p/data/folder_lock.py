"""One writer per pack folder: two `fastp2p pack` runs into the same OUT/PHASE would each
rename their shards over the other's and write an index that describes neither. A reader that
finds a pack unfinished asks the lock whether a pack is writing it now (``pack_running``)."""
import contextlib
import fcntl
import os
from pathlib import Path

from fastp2p.atomic_files import NotAPlainFile, open_plain_file
from fastp2p.data.errors import DataError

LOCK_NAME = ".pack.lock"


def _open_lock_file(folder: Path, flags: int) -> int:
    """The lock file's descriptor, never through a symbolic link: a link planted at its name
    would have the lock file created at the link's target (DataError naming it)."""
    try:
        return open_plain_file(Path(folder) / LOCK_NAME, flags, 0o644)
    except NotAPlainFile as error:
        raise DataError(str(error)) from None


def _holders(fd: int, kind: str) -> str:
    """" (pid 12, 34)": the processes that hold a ``kind`` ("READ" or "WRITE") flock on
    ``fd``'s file, as Linux's /proc/locks lists them; "" where that is unknown."""
    info = os.fstat(fd)
    file_id = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as locks:
            rows = [line.split() for line in locks]
    except OSError:
        return ""
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a waiter's row has "->" after "1:"
    pids = sorted({int(row[4]) for row in rows if len(row) > 5 and row[1] == "FLOCK"
                   and row[3] == kind and row[5] == file_id and row[4].isdigit()} - {0})
    return f" (pid {', '.join(map(str, pids))})" if pids else ""


def _writing_now(folder: Path, fd: int) -> str:
    return (f"{folder}: a `fastp2p pack` is writing this pack now{_holders(fd, 'WRITE')}; wait "
            "for it to finish, then run this again")


def pack_running(folder: Path) -> str | None:
    """What to say of ``folder`` when a `fastp2p pack` holds its lock now (it is writing it);
    None when none does, or when that cannot be told (no lock file, not readable)."""
    try:
        fd = _open_lock_file(folder, os.O_RDONLY)
    except (OSError, DataError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _writing_now(folder, fd)
    except OSError:         # a file system without locks
        return None
    finally:
        os.close(fd)
    return None


@contextlib.contextmanager
def writing_folder(folder: Path):
    """Hold an exclusive lock on ``folder`` (which must exist) for the block; DataError at once
    if another process holds it. The lock is the kernel's (flock), so a killed holder releases
    it; the lock file stays (removing it would let a later run lock a file no one else sees)."""
    fd = _open_lock_file(folder, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{folder}: another `fastp2p pack` is writing this folder"
                            f"{_holders(fd, 'WRITE')}; wait for it to finish (then run this "
                            "command again: finished shards are kept), or pack into another "
                            "OUT") from None
        yield
    finally:
        os.close(fd)
