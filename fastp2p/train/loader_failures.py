"""One line for a data loader worker that died, as ``fastp2p train`` and ``fastp2p test`` say
it: torch's reason, and what to do about it (out of memory, a crash on a damaged image, a
signal from outside, a thread it could not start); and one for workers that could not be
started, or whose batches could not be received.
"""
import errno
import re

from fastp2p.data.errors import THREAD_NOT_STARTED_EXIT, said_thread_not_started
from fastp2p.file_reads import read_error_advice
from fastp2p.import_memory import memory_limit_set
from fastp2p.process_limit import raise_process_limit_advice
# The fewer workers that every advice ends with
_FEWER_WORKERS = "--num_threads (0 loads the data in this process)"


def is_loader_worker_death(err: RuntimeError) -> bool:
    """Whether ``err`` is torch's report of a dead loader worker."""
    return str(err).startswith("DataLoader worker")


def loader_worker_death(err: RuntimeError, then: str) -> str | None:
    """"a data loader worker died (torch's reason), what to do" when ``err`` is torch's report
    of a dead loader worker, else None. ``then``: what to do once the cause is dealt with
    ("resume with --continue_train")."""
    if not is_loader_worker_death(err):
        return None
    reason = _worker_death_reason(err)
    return f"a data loader worker died ({reason}), {_worker_death_advice(reason, then)}"


def _worker_death_reason(err: RuntimeError) -> str:
    """torch's first line about a dead loader worker; its "is killed by signal: NAME" when that
    is in the error or its causes (a worker death met while waiting for a batch is reported
    as "exited unexpectedly", raised from the one that names the signal)."""
    lines, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        lines.append((str(err).splitlines() or [""])[0].strip())
        err = err.__cause__ or err.__context__
    return next((line for line in lines if "killed by signal" in line), lines[0])


# What the worker's own code raises when it crashes (SIGSEGV, SIGABRT, SIGFPE, SIGILL, SIGBUS),
# as torch names them: a fault while decoding, not a stop from outside. SIGBUS: an image file cut
# short while Pillow maps it (it maps uncompressed ones, a PGM say); a full /dev/shm is no longer
# one (torch fallocates a batch's segment, and its error is SharedMemoryFull)
_CRASH_SIGNALS = ("Segmentation fault", "Aborted", "Floating point exception",
                  "Illegal instruction", "Bus error")


# torch's SIGCHLD handler's report of a worker that exited: its pid and its exit code
_EXITED = re.compile(r"\(pid (\d+)\) exited unexpectedly with exit code (-?\d+)\.")


def _could_not_start_a_thread(reason: str) -> bool:
    """Whether ``reason`` (torch's line) names a worker that exited with
    ``THREAD_NOT_STARTED_EXIT`` and left its marker, as the loader's workers do for a thread
    they cannot start; a dataset's own code, or a C library, that exits with that code leaves
    none."""
    exited = _EXITED.search(reason)
    return exited is not None and int(exited.group(2)) == THREAD_NOT_STARTED_EXIT \
        and said_thread_not_started(int(exited.group(1)))


def _worker_death_advice(reason: str, then: str) -> str:
    """What to do about a data loader worker that died, from torch's one-line ``reason``: the
    out-of-memory killer sends SIGKILL ("Killed"); a crash signal is a fault in the worker (an
    image library on a damaged file, say), which a resume meets again; a worker killed by
    another signal was stopped from outside (the workers ignore SIGINT and SIGTERM, which the
    main process handles); a worker that exited with ``THREAD_NOT_STARTED_EXIT`` and said so
    (``_could_not_start_a_thread``) could not start a thread, not out of memory, unless a
    memory limit is set (under which a thread's stack may not be mapped); "exited
    unexpectedly" alone does not say."""
    if _could_not_start_a_thread(reason):
        not_memory = "" if memory_limit_set() else ", not out of memory"
        return (f"it could not start a thread{not_memory}: {raise_process_limit_advice()}, or "
                f"use fewer {_FEWER_WORKERS}, then {then}")
    killed_by = re.search(r"killed by signal: ([^.]+)", reason)
    name = killed_by.group(1) if killed_by else None
    if name in _CRASH_SIGNALS:
        return (f"the worker crashed ({name}), not out of memory: an image library failing on "
                "a damaged image, say; check or remove the images, or repack them with "
                f"`fastp2p pack`, then {then}")
    if name is not None and name != "Killed":
        return (f"stopped by a signal ({name}) from outside this run, not out of "
                f"memory: {then}")
    return f"probably out of memory: lower --num_threads, then {then}"


def loader_workers_failed(err, then: str) -> str:
    """The line for ``err``, a ``LoaderWorkersFailed`` (fastp2p.data.loader: workers not
    started, or their batches not received): what failed, what ran out (its errno's words:
    "Too many open files" is the limit on open files, not the disk), what limit to raise
    (``_limit_advice``) or what else to make larger (its ``enlarge``: a full shared memory),
    and fewer workers. ``then``: what to do once that is done ("run it again")."""
    limit = err.enlarge or _limit_advice(err)
    fewer = f"{limit}, or use fewer" if limit else "use fewer"
    return (f"{err.what.format(workers=err.workers)} ({err}): "
            f"{fewer} {_FEWER_WORKERS}, then {then}")


def _limit_advice(err: OSError) -> str | None:
    """What limit to raise for ``err``: on open files (``read_error_advice``), on processes and
    threads (EAGAIN: a fork or a thread refused; and the memory limit where one is set, which
    refuses a thread whose stack cannot be mapped alike); None for another errno."""
    # (read_error_advice's EAGAIN is a read's, a lease: here it is the process limit)
    if err.errno in (errno.EMFILE, errno.ENFILE):
        return read_error_advice(err)
    return raise_process_limit_advice() if err.errno == errno.EAGAIN else None
