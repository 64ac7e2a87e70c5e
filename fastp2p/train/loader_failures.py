"""One line for a data loader worker that died, as ``fastp2p train`` and ``fastp2p test`` say
it: torch's reason, and what to do about it (out of memory, a crash on a damaged image, a
signal from outside); and one for workers that could not be started, or whose batches could
not be received.
"""
import errno
import re

from fastp2p.file_reads import read_error_advice


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


def _worker_death_advice(reason: str, then: str) -> str:
    """What to do about a data loader worker that died, from torch's one-line ``reason``: the
    out-of-memory killer sends SIGKILL ("Killed"); a crash signal is a fault in the worker (an
    image library on a damaged file, say), which a resume meets again; a worker killed by
    another signal was stopped from outside (the workers ignore SIGINT and SIGTERM, which the
    main process handles); "exited unexpectedly" does not say."""
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
    "Too many open files" is the limit on open files, not the disk), what to raise for a
    limit on open files (``read_error_advice``) or what else to make larger (its ``enlarge``:
    a full shared memory), and fewer workers. ``then``: what to do once that is done ("run it
    again")."""
    # (its other errnos' advice is a read's: EAGAIN there is a lease, here the process limit)
    limit = err.enlarge or (read_error_advice(err) if err.errno in (errno.EMFILE, errno.ENFILE)
                            else None)
    fewer = f"{limit}, or use fewer" if limit else "use fewer"
    return (f"{err.what.format(workers=err.workers)} ({err}): "
            f"{fewer} --num_threads (0 loads the data in this process), then {then}")
