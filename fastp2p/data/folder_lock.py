"""The lock of a pack folder (``OUT/PHASE/.pack.lock``, the kernel's ``flock``):

- one writer: two `fastp2p pack` runs into the same OUT/PHASE would each rename their shards
  over the other's and write an index that describes neither, so a pack takes it exclusively
  before its first write and a second is refused at once;
- no writer while a reader reads: a training maps each shard at its first use, against the
  index it read at its start, so a pack rewritten under it would fail it later with a
  misleading error. ``ReadingLock`` holds it shared (any number of readers at once), and a pack
  refuses to rewrite the pack while one does;
- a re-run that changes nothing is no writer: ``packing_folder`` holds the lock shared while
  the pack checks what it would keep (minutes of checksums on a large pack, during which a
  training may start reading, and another pack that would write is refused as by a reader),
  and takes it exclusively only once something is to be written.
  So `fastp2p pack DATAROOT OUT` run again, to add a split say, goes through a pack a training
  reads as long as that pack is up to date.

A killed holder's lock goes with it. The lock file stays (removing it would let a later run
lock a file no one else sees).
"""
import contextlib
import fcntl
import os
import weakref
from pathlib import Path

from fastp2p.atomic_files import NotAPlainFile, open_plain_file
from fastp2p.data.errors import DataError

LOCK_NAME = ".pack.lock"


class PackFolderBusy(DataError):
    """Refused as another process holds a pack folder's lock: a pack, as another pack writes
    it or readers read a pack it would change; a reader (a training, `fastp2p test`), as a pack
    writes the pack it would read. Not the refused run's fault: `fastp2p pack`, train and test
    exit with EXIT_IN_USE (try again later), as train and test do for their own folders."""


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
    pids = sorted(flock_holders(fd, kind) - {0})
    return f" (pid {', '.join(map(str, pids))})" if pids else ""


def flock_holders(fd: int, kind: str) -> set:
    """The pids of the processes that hold a ``kind`` ("READ" or "WRITE") flock on ``fd``'s
    file, as Linux's /proc/locks lists them (0: one outside this pid namespace); empty where
    that is unknown. Looked up, not tried: a probe that takes the lock, even shared for an
    instant, refuses a run that takes it at that instant."""
    info = os.fstat(fd)
    file_id = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as locks:
            rows = [line.split() for line in locks]
    except OSError:
        return set()
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a waiter's row has "->" after "1:"
    return {int(row[4]) for row in rows if len(row) > 5 and row[1] == "FLOCK"
            and row[3] == kind and row[5] == file_id and row[4].isdigit()}


def _writing_now(folder: Path, fd: int) -> PackFolderBusy:
    return PackFolderBusy(f"{folder}: a `fastp2p pack` is writing this pack now"
                          f"{_holders(fd, 'WRITE')}; wait for it to finish, then run this again")


def pack_running(folder: Path) -> PackFolderBusy | None:
    """The error to raise for ``folder`` when a `fastp2p pack` holds its lock now (it is
    writing it); None when none does, or when that cannot be told (no lock file, not
    readable)."""
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
def packing_folder(folder: Path):
    """Hold ``folder``'s lock (``folder`` must exist) shared for the block, as readers do, and
    yield a function to call before the first write, which takes it exclusively. DataError at
    once if another pack is writing there, and from that function if a reader (``ReadingLock``)
    or another pack holds it then (both a PackFolderBusy)."""
    # read-only: flock needs no write access, and a lock file a training created (its user's,
    # mode 644) must not keep the pack's owner out
    fd = _open_lock_file(folder, os.O_RDONLY | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _another_pack_writing(folder, fd) from None
        yield lambda: _lock_exclusively(folder, fd)
    finally:
        os.close(fd)


def _another_pack_writing(folder: Path, fd: int) -> PackFolderBusy:
    return PackFolderBusy(f"{folder}: another `fastp2p pack` is writing this folder"
                          f"{_holders(fd, 'WRITE')}; wait for it to finish (then run this "
                          "command again: finished shards are kept), or pack into another OUT")


def _lock_exclusively(folder: Path, fd: int) -> None:
    """Take ``fd``'s lock exclusively (from shared: Linux lets go of the shared lock first, so
    a refusal leaves none), or raise DataError naming who holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    try:    # a shared lock is refused only while a writer holds it
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _another_pack_writing(folder, fd) from None
    fcntl.flock(fd, fcntl.LOCK_UN)      # listed with the readers otherwise
    readers = _holders(fd, "READ")
    try:    # readers only; they may have ended since the first try
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if _holders(fd, "WRITE"):   # another pack took it since the probe
            raise _another_pack_writing(folder, fd) from None
        # a shared holder is a reader (ReadingLock) or a pack checking its shards
        # (packing_folder), which the kernel's lock does not tell apart
        raise PackFolderBusy(f"{folder}: this pack is read now{readers} by a training or "
                             "`fastp2p test`, or checked by another `fastp2p pack`, and this run "
                             "would change it; stop the readers or let them end (a pack's check "
                             "ends by itself), then run this command again, pack into another "
                             "OUT, or pack only other phases with --phase") from None


# the reading locks this process holds, for a forked child to let go of
_held = weakref.WeakSet()


class ReadingLock:
    """A shared lock on the pack ``folder`` while this object lives (or until ``close``): while
    it is held, `fastp2p pack` refuses to rewrite the pack; other readers share it.
    PackFolderBusy if a pack is being written into the folder now; DataError for a symbolic
    link at the lock file.

    Without a lock file, one is created; where it cannot be (a read-only pack) or locks are not
    supported, nothing is locked: the reader checks what it reads against the index anyway.

    A forked child (a DataLoader worker) closes its copy of the descriptor at once: the flock
    belongs to the open file that parent and child share, so the child's copy would keep the
    pack locked as long as the child lived, after the training that forked it. Closing a copy
    never unlocks the parent's (only LOCK_UN or closing the last copy would)."""

    def __init__(self, folder: Path):
        self._release = None
        try:
            fd = _open_lock_file(folder, os.O_RDONLY)
        except FileNotFoundError:   # a pack copied without it, or made before it existed
            try:
                fd = _open_lock_file(folder, os.O_RDONLY | os.O_CREAT)
            except OSError:
                return
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = _writing_now(folder, fd)    # names the holder: before the close
            os.close(fd)
            raise busy from None
        except OSError:
            os.close(fd)
            return
        # closes it when this object is collected, or at exit (at most once)
        self._release = weakref.finalize(self, os.close, fd)
        _held.add(self)

    def close(self) -> None:
        if self._release is not None:
            self._release()

    def __getstate__(self):
        # a copy in another process (a spawned worker) holds nothing: the lock stays here
        return {"_release": None}


def _let_go_in_child() -> None:
    for lock in list(_held):
        lock.close()


os.register_at_fork(after_in_child=_let_go_in_child)
