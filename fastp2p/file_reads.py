"""Opening a file fastp2p reads back (checkpoints, their manifests, a run's options and loss
log, JSON records): a regular file only, opened without blocking.

Run folders may be shared by several users. A FIFO planted at a file's name blocked the open
until someone wrote into it (``fastp2p test`` hung), and a link to a device (``/dev/zero``)
read without end until memory ran out. Symbolic links are followed: reading through one writes
nowhere, and a user may keep a checkpoint on another disk. A reader that knows how large its
file can be says so (``read_text``'s ``max_bytes``): a larger one is refused before it is read.

``read_error_advice`` says what to do about an OSError of such a read, by its errno.
"""
import errno
import os
import stat

# opening a FIFO for reading blocks until a writer opens it, unless non-blocking
_NO_BLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOSE_ON_EXEC = getattr(os, "O_CLOEXEC", 0)
_PATH_ONLY = getattr(os, "O_PATH", 0)   # Linux: a descriptor that names a file, not opened
_GROWTH_READ = 1 << 16   # characters read at a time past the size a file had when opened


class NotAFileToRead(ValueError):
    """What is at a path fastp2p reads is a FIFO, a device or a socket."""

    def __init__(self, path):
        super().__init__(f"{path} is a special file (a FIFO, device or socket), not a regular "
                         "file: fastp2p does not read from it; remove it and run again")


class FileTooLarge(ValueError):
    """A file fastp2p reads is larger than any it writes there (``read_text``'s
    ``max_bytes``). ``size``: its bytes, ``limit``: the most that is read."""

    def __init__(self, path, size: int, limit: int):
        super().__init__(f"{path} is {size} bytes, more than the {limit} fastp2p reads there")
        self.size, self.limit = size, limit


def read_error_advice(error: OSError) -> str | None:
    """What to do about an OSError of opening or reading a file, by its errno, as a phrase a
    message goes on from ("..., then run again"): a permission (EACCES, EPERM), a file removed
    (ENOENT), the device failing (EIO), a file replaced on an NFS server (ESTALE), another
    process's lease (EAGAIN), a limit on open files (EMFILE for the process, ENFILE for the
    system); None for any other errno, whose strerror says all that is known."""
    number = error.errno
    if number in (errno.EACCES, errno.EPERM):
        return "make it readable by this user (its permissions, or its folders')"
    if number == errno.ENOENT:
        return "it was removed or renamed since it was found; restore it"
    if number == errno.EIO:
        return ("the disk or file server failed to read it; check that device (the kernel log, "
                "`dmesg`) or server")
    if number == errno.ESTALE:
        return ("on NFS, it was replaced or removed on the server (by another machine) while "
                "open here; wait until that is done")
    if number in (errno.EAGAIN, errno.EWOULDBLOCK):
        return ("wait until another process lets go of its lease on it (a Samba or NFS server "
                "sharing it)")
    if number == errno.EMFILE:
        return "raise this process's limit on open files (`ulimit -n`, shown by `ulimit -Hn`)"
    if number == errno.ENFILE:
        return ("the system has as many files open as it allows; close other programs or raise "
                "that limit (sysctl fs.file-max)")
    return None


def open_descriptor_to_read(path) -> int:
    """``os.open(path, O_RDONLY)`` without blocking on a FIFO at ``path`` (the descriptor is
    made blocking again once open); what it opened is the caller's to check (a FIFO opens).

    A regular file another process holds a lease on (``F_SETLEASE``: Samba's oplocks, an NFS
    server's delegations) fails a non-blocking open with EWOULDBLOCK, once the holder has been
    asked to let go. It is opened again as a plain open would, waiting for the holder (or for
    the kernel to break the lease, /proc/sys/fs/lease-break-time seconds on), through an
    ``O_PATH`` descriptor found to be a regular file first, so that no FIFO swapped in meanwhile
    is waited on. Where that is not possible (no ``O_PATH``, no /proc), it raises the
    EWOULDBLOCK (BlockingIOError)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NO_BLOCK | _CLOSE_ON_EXEC)
    except BlockingIOError as error:
        return _open_leased(path, error)
    return _blocking(fd) if _NO_BLOCK else fd


def _blocking(fd: int) -> int:
    """``fd`` made blocking; closed, not leaked, if that fails (an interrupt, an fcntl error)."""
    try:
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_leased(path, refusal: BlockingIOError) -> int:
    """``path`` opened blocking if it is a regular file (see ``open_descriptor_to_read``);
    ``refusal`` raised again where it cannot be reopened so."""
    if not _PATH_ONLY:
        raise refusal
    named = os.open(path, _PATH_ONLY | _CLOSE_ON_EXEC)    # breaks no lease, opens no FIFO
    try:
        if not stat.S_ISREG(os.fstat(named).st_mode):   # swapped since: it holds no lease
            return _blocking(os.open(path, os.O_RDONLY | _NO_BLOCK | _CLOSE_ON_EXEC))
        try:    # the file ``named`` is, whatever is at ``path`` by now
            return os.open(f"/proc/self/fd/{named}", os.O_RDONLY | _CLOSE_ON_EXEC)
        except FileNotFoundError:   # no /proc mounted
            raise refusal from None
    finally:
        os.close(named)


def open_to_read(path, mode: str = "rb", **options):
    """``open(path, mode, **options)`` for reading that opens nothing but a regular file:
    raises NotAFileToRead (a ValueError) for a FIFO, device or socket, OSError as ``open``
    does for the rest (FileNotFoundError, IsADirectoryError, PermissionError). The file
    object's ``name`` is its descriptor, as for any ``open(fd)``."""
    fd = open_descriptor_to_read(path)
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(kind):
            raise NotAFileToRead(path)
        return open(fd, mode, **options)
    except BaseException:
        os.close(fd)
        raise


def read_text(path, max_bytes: int | None = None, **options) -> str:
    """The text of the regular file ``path`` (``open_to_read``'s refusals); FileTooLarge (a
    ValueError), before reading it, for one of more than ``max_bytes`` bytes."""
    with open_to_read(path, "r", **options) as handle:
        if max_bytes is None:
            return handle.read()
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise FileTooLarge(path, size, max_bytes)
        # A read of n characters reserves n bytes at once, so ask for what the file holds,
        # then for what it grew by since the stat, up to max_bytes characters (each a byte at
        # least) in all. read(max_bytes + 1) reserved 1 GiB for every pack index.
        text = handle.read(size + 1)
        while len(text) <= max_bytes:
            more = handle.read(min(_GROWTH_READ, max_bytes + 1 - len(text)))
            if not more:
                return text
            text += more
        raise FileTooLarge(path, len(text), max_bytes)
