"""One training run at a time in a run folder: ``fastp2p train`` holds an exclusive lock on
CHECKPOINTS_DIR/NAME/.lock from its check of the folder until it exits. Two runs of one --name
started together (a resubmitted job, a double click) otherwise both passed the check and
trained into one folder: one loss_log.csv with both runs' rows, latest_* from either.

The lock is ``flock`` (advisory, non-blocking: the second run stops at once instead of
waiting), so it goes with the process however it ends, a kill included; nothing stale is ever
left to clear by hand. The file is removed when the run ends, and the folder too when the run
made it and left nothing else in it (a run refused before its first write leaves no trace).

The file is writable by every user (see ``_open``), so another user may put a symbolic link at
its name: it is opened without following links, and a link, FIFO or device there is refused
(``fastp2p.atomic_files.NotAPlainFile``) before anything is written, so the pid this run writes
into its lock never lands in a file elsewhere.

The run folder itself may be a symbolic link: one its user made (a run kept on another disk) is
followed, one another user made (in a checkpoints folder they share) is refused before the
folder is made or locked: through it, the whole run (lock, checkpoints, loss log, --overwrite's
removals) would happen in a folder of that user's choosing, one of the victim's own included.
A symbolic link as the checkpoints folder (``--checkpoints_dir``, named by the user) is fine.
"""
import errno
import fcntl
import os
from pathlib import Path

from fastp2p.atomic_files import open_plain_file, refuse_linked_folder

LOCK_NAME = ".lock"
# flock's errors on file systems without locks (some NFS, Lustre or FUSE mounts): there the
# run goes on unlocked, with a warning, rather than not at all
NO_LOCKS_HERE = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
# the most of the lock file read for its holder's pid (a pid has at most 7 digits on Linux)
PID_BYTES = 32


class RunFolderBusy(Exception):
    """Another process holds the run folder's lock."""


def _holder(fd: int) -> str:
    """The holder's "process N, " (it writes its pid as the file's first line), or nothing.
    Only the first bytes are read, through the descriptor just locked: every user may write the
    file (a sparse 3 GB one was read whole: MemoryError), or put a link at its name since."""
    try:
        first_line = os.pread(fd, PID_BYTES, 0).split(b"\n", 1)[0].strip()
    except OSError:
        return ""
    return f"process {int(first_line)}, " if first_line.isdigit() else ""


def held_now(folder) -> bool:
    """Whether a process holds ``folder``'s lock now (a training of that run, still going:
    the lock goes with its process), as /proc/locks lists it; False where that cannot be told
    (no lock file: no run holds it; a link or special file at its name is not opened)."""
    from fastp2p.data.folder_lock import flock_holders

    try:
        fd = open_plain_file(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except (OSError, ValueError):   # ValueError: NotAPlainFile
        return False
    try:
        return bool(flock_holders(fd, "WRITE"))
    finally:
        os.close(fd)


class RunFolderLock:
    """``acquire()`` takes the lock of ``folder`` (creating the folder) or raises
    RunFolderBusy; ``release()`` gives it back (a no-op when not held). ``command`` names the
    runs the lock keeps out and ``option`` the option that picks another folder, in messages
    (``fastp2p test`` locks its results folder the same way)."""

    def __init__(self, folder, command: str = "fastp2p train", option: str = "--name"):
        self.folder = Path(folder)
        self.command, self.option = command, option
        self.path = self.folder / LOCK_NAME
        self._fd = None
        self._made = []   # the folders acquire() created, deepest first

    def acquire(self):
        """None once the lock is held, or a warning line when the folder's file system has no
        locks (the run goes on without); raises RunFolderBusy, NotAPlainFile (a ValueError: a
        link or a special file at the lock's name, or the folder a link another user made),
        LinkToNothing (a ValueError: the folder your own link to nothing, a disk not mounted,
        say), or OSError (e.g. a read-only checkpoints folder)."""
        while self._fd is None:
            missing = [folder for folder in (self.folder, *self.folder.parents)
                       if not folder.is_dir()]
            # before mkdir (a dangling link would fail it with a bare "File exists"), and after
            # it: a link planted in between would otherwise be taken for the folder just made
            self._refuse_others_link()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._refuse_others_link()
            self._made = self._made or missing
            try:
                fd = self._open()
            except (FileNotFoundError, FileExistsError):
                continue  # the folder or file went or came (a run ended, one began): again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunFolderBusy(
                    f"{self.folder} is in use: another `{self.command}` run holds it "
                    f"({holder}{self.path}); wait for it to end, or pick another "
                    f"{self.option}") from None
            except OSError as err:
                os.close(fd)
                if err.errno not in NO_LOCKS_HERE:
                    raise
                self.path.unlink(missing_ok=True)
                return (f"warning: {self.folder}: its file system does not lock files "
                        f"({os.strerror(err.errno)}), so nothing keeps a second run of this "
                        f"{self.option} out of it while this one runs")
            except BaseException:
                os.close(fd)
                raise
            if self._still_linked(fd):
                self._fd = fd
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())   # for the message above
                except OSError:
                    pass   # another user's file, opened read-only: locked all the same
            else:
                # the run that held it removed the file between our open and our lock: the
                # lock is on a file no one else will open; take the one at the path now
                os.close(fd)

    def _refuse_others_link(self) -> None:
        refuse_linked_folder(self.folder, advice=f"remove it, or pick another {self.option}")

    def _open(self) -> int:
        """The lock file, made writable by every user the umask allows: a run folder shared by
        several users must not be locked for good by a file one of them left behind (a
        killed run's). A file another user made without that is opened read-only, which
        flock takes just as well. Never through a symbolic link (``open_plain_file``).
        PermissionError naming the folder where it holds no lock file and this user may not
        make one there (a folder shared read-only). FileNotFoundError or FileExistsError: a
        folder or file that went or came meanwhile; acquire() tries again."""
        try:
            return open_plain_file(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            pass
        try:
            return open_plain_file(self.path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        # No file: another user's went since (its run ended), or the folder is not writable,
        # which O_EXCL alone tells apart: acquire() took the FileNotFoundError above for a
        # folder removed meanwhile and tried again without end (100 % CPU, no output).
        try:
            return open_plain_file(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except PermissionError as err:
            raise PermissionError(err.errno, err.strerror, str(self.folder)) from None

    def _still_linked(self, fd: int) -> bool:
        try:
            here = os.lstat(self.path)   # a link put there since is not our file
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            # removed while still held: a process that opened it meanwhile finds it unlinked
            # after taking the lock and starts over (acquire's check)
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                return   # a file left behind is harmless: the lock goes with the descriptor
            for folder in self._made:
                try:
                    folder.rmdir()   # only if the run left nothing in it
                except OSError:
                    break
        finally:
            os.close(self._fd)
            self._fd = None
