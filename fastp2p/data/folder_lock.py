"""One writer per pack folder: two `fastp2p pack` runs into the same OUT/PHASE would each
rename their shards over the other's and write an index that describes neither."""
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
            raise DataError(f"{folder}: another `fastp2p pack` is writing this folder; wait for "
                            "it to finish (then run this command again: finished shards are "
                            "kept), or pack into another OUT") from None
        yield
    finally:
        os.close(fd)
