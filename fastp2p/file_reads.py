"""Opening a file fastp2p reads back (checkpoints, their manifests, a run's options and loss
log, JSON records): a regular file only, opened without blocking.

Run folders may be shared by several users. A FIFO planted at a file's name blocked the open
until someone wrote into it (``fastp2p test`` hung), and a link to a device (``/dev/zero``)
read without end until memory ran out. Symbolic links are followed: reading through one writes
nowhere, and a user may keep a checkpoint on another disk.
"""
import errno
import os
import stat

# opening a FIFO for reading blocks until a writer opens it, unless non-blocking
_NO_BLOCK = getattr(os, "O_NONBLOCK", 0)


class NotAFileToRead(ValueError):
    """What is at a path fastp2p reads is a FIFO, a device or a socket."""

    def __init__(self, path):
        super().__init__(f"{path} is a special file (a FIFO, device or socket), not a regular "
                         "file: fastp2p does not read from it; remove it and run again")


def open_to_read(path, mode: str = "rb", **options):
    """``open(path, mode, **options)`` for reading that opens nothing but a regular file:
    raises NotAFileToRead (a ValueError) for a FIFO, device or socket, OSError as ``open``
    does for the rest (FileNotFoundError, IsADirectoryError, PermissionError). The file
    object's ``name`` is its descriptor, as for any ``open(fd)``."""
    fd = os.open(path, os.O_RDONLY | _NO_BLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(kind):
            raise NotAFileToRead(path)
        if _NO_BLOCK:
            os.set_blocking(fd, True)
        return open(fd, mode, **options)
    except BaseException:
        os.close(fd)
        raise


def read_text(path, **options) -> str:
    """The text of the regular file ``path`` (``open_to_read``'s refusals)."""
    with open_to_read(path, "r", **options) as handle:
        return handle.read()
