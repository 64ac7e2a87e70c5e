"""Replacing a file atomically: write a temporary sibling, then rename it over the target.

One implementation for every writer whose file someone else may be reading or relying on
(packed shards and their index, checkpoints, the training report's images and pages, benchmark
results): a reader sees the old file or the new one, never a torn one.
"""
import os
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """``.NAME.tmp-PID.SUFFIX`` beside ``path``: hidden, unique per process, and ending in the
    target's suffix so writers that pick a format by extension (Pillow, matplotlib) still do."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


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
    """Yield a temporary path to write; when the block ends without error, rename it over
    ``path``. ``durable``: fsync the file before and its folder after the rename, so a power
    loss keeps the old or the new file. On any error the temporary file is removed and ``path``
    is left as it was."""
    path = Path(path)
    temp = temporary_sibling(path)
    try:
        yield temp
        if durable:
            fsync_file(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    if durable:
        fsync_directory(path.parent)


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
