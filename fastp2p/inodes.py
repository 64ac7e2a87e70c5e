"""A full disk that is out of inodes, not bytes: a file system holds a fixed number of files
(its inodes, ``df -i``; HPC scratch file systems and tmpfs limit them), and once they are all
taken every new file fails with the same ENOSPC, "No space left on device", as when the bytes run
out. Deleting large files, the advice for that, does not help: deleting files (any) does. On HPC
scratch the limit met is more often a per-user quota of bytes or files (EDQUOT), which the file
system's own counts do not show."""
import errno
import os

# Fewer free inodes than this counts as none left: a failed write's temporary files are removed
# before its message is made, which frees a few of them again.
FEW_INODES = 64
OUT_OF_INODES = ("its file system has no free inodes left (the files it can hold, `df -i`), "
                 "though it has free space: delete files there or raise its inode limit")
QUOTA_REACHED = ("a disk quota was reached (of bytes or of files: `quota -s`, or `lfs quota -u "
                 "$USER` on Lustre): delete files there or ask for a larger quota")


def nearest_existing(path) -> str:
    """``path``, absolute, or its nearest parent that exists: where the file system that
    ``path`` is or would be made on is asked."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def free_inodes(path) -> int | None:
    """The inodes a process may still take on the file system ``path`` is or would be made on;
    None where that file system has no fixed number (it says 0 in all: btrfs, many network
    file systems)."""
    stats = os.statvfs(nearest_existing(path))
    return stats.f_favail if stats.f_files else None


def disk_limit_advice(err: BaseException) -> str | None:
    """What to do where ``err`` is a disk limit other than its free bytes, which "Free disk
    space" does not mend: a quota (EDQUOT, QUOTA_REACHED) or a disk out of inodes
    (``out_of_inodes_advice``); None otherwise."""
    if isinstance(err, OSError) and err.errno == errno.EDQUOT:
        return QUOTA_REACHED
    return out_of_inodes_advice(err)


def out_of_inodes_advice(err: BaseException) -> str | None:
    """OUT_OF_INODES for an ENOSPC of a named file whose file system has few free inodes left
    (FEW_INODES), and a smaller share of its inodes free than of its bytes; None otherwise (a
    disk out of bytes, or one whose numbers cannot be read)."""
    if not (isinstance(err, OSError) and err.errno == errno.ENOSPC
            and isinstance(err.filename, (str, bytes, os.PathLike))):
        return None
    try:
        stats = os.statvfs(nearest_existing(os.fsdecode(err.filename)))
    except OSError:
        return None
    if not stats.f_files or stats.f_favail >= FEW_INODES:
        return None
    return OUT_OF_INODES if (stats.f_favail / stats.f_files
                             < stats.f_bavail / max(stats.f_blocks, 1)) else None
