"""One writer per pack folder: two `fastp2p pack` runs into the same OUT/PHASE would each
rename their shards over the other's and write an index that describes neither."""
import contextlib
import fcntl
import os
from pathlib import Path

from fastp2p.data.errors import DataError

LOCK_NAME = ".pack.lock"


@contextlib.contextmanager
def writing_folder(folder: Path):
    """Hold an exclusive lock on ``folder`` (which must exist) for the block; DataError at once
    if another process holds it. The lock is the kernel's (flock), so a killed holder releases
    it; the lock file stays (removing it would let a later run lock a file no one else sees)."""
    fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
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
