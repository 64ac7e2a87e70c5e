"""Batches for training: rank sharding, an order and augmentation fixed by (seed, epoch), and
background workers that assemble batches (pinned when asked).

Order: exactly ``torch.utils.data.DistributedSampler`` (shuffled by seed + epoch, padded to a
multiple of world_size, rank r takes every world_size-th index). Augmentation: each item's crop
and flip come from a generator seeded by (seed, epoch, index), so they do not depend on the
number of workers or on which worker loads the item. torch's generator keeps the low 32 bits
of seed + epoch, so seeds 2**32 apart give one order (their crops and flips differ): a seed
above 2**32-1 is not refused here, since an older run's saved seed comes through as it was
saved and must order its resumed epochs as before; `fastp2p train --seed` refuses one.

Bad files: a ``DataError`` raised while a worker loads an item would reach the main process as a
multi-line worker traceback; instead the worker hands the error back as a ``_LoadFailure`` and the
main process raises it as the same one-line ``DataError`` naming the file.

Workers that cannot all be started (a limit on open files, processes or memory reached part way,
or a thread of this process that sends them work refused at the limit on processes and threads)
raise ``WorkersNotStarted``, once those already started are killed: they ignore the SIGTERM that
multiprocessing's exit hook stops them with, and its join then waited for them forever. Batches
that cannot be received for the same limit raise ``BatchesNotReceived``, batches that cannot be
put in the shared memory they pass through (/dev/shm full: Docker's is 64 MB) ``SharedMemoryFull``,
and a worker whose own thread could not start ``WorkerThreadsNotStarted``.
"""
import contextlib
import errno
import functools
import itertools
import multiprocessing.connection
import multiprocessing.util
import os
import random
import re
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, default_collate
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from fastp2p import cpu_info
from fastp2p.atomic_files import create_empty_file
from fastp2p.data.errors import (THREAD_NOT_STARTED_EXIT, DataError, is_thread_not_started,
                                 said_thread_not_started, shown_path,
                                 thread_not_started_marker)


def item_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of one pair's crop and flip: a function of (seed, epoch, index) alone, so
    any worker count, rank split or resume point draws the same (the packed GPU loader too)."""
    return random.Random(f"{seed}/{epoch}/{index}")


class LoaderWorkersFailed(OSError):
    """The loader's ``workers`` worker processes failed with this OSError's errno, as ``what``
    says (with ``{workers}``), for the line ``loader_failures.loader_workers_failed`` makes."""
    what = ""
    # what to make larger, said before fewer workers (None: the errno's own advice, if any)
    enlarge = None

    def __init__(self, error: OSError, workers: int):
        super().__init__(error.errno, error.strerror)
        self.workers = workers


class WorkersNotStarted(LoaderWorkersFailed):
    """Starting the workers failed (EMFILE: the process's limit on open files, each worker
    holding pipes; EAGAIN: on processes; ENOMEM); the workers started before it were killed."""
    what = "could not start the data loader's {workers} worker process(es)"


class BatchesNotReceived(LoaderWorkersFailed):
    """The workers ran, but this process could not receive their batches: each comes as file
    descriptors, and the limit on open files was reached (torch's RuntimeError "Too many open
    files. Communication with the workers is no longer possible", a traceback)."""
    what = "could not receive the batches of the data loader's {workers} worker process(es)"


class SharedMemoryFull(LoaderWorkersFailed):
    """A worker could not put its batch in shared memory (``/dev/shm``), through which the
    batches pass to this process: full (ENOSPC), as a container's small one is at a few large
    batches in flight (torch's RuntimeError, with the worker's traceback, was a traceback)."""
    what = ("could not pass the batches of the data loader's {workers} worker process(es) "
            "through the shared memory in /dev/shm")
    enlarge = "make /dev/shm larger (docker run --shm-size, 64 MB by default)"


class WorkerThreadsNotStarted(LoaderWorkersFailed):
    """A worker could not start a thread it sends its batches with (the queue's feeder; the one
    that shares their file descriptors), at the limit on processes and threads (EAGAIN): it
    exited with ``THREAD_NOT_STARTED_EXIT`` and left its marker
    (``_exit_where_a_thread_cannot_start``)."""
    what = "could not start the threads of the data loader's {workers} worker process(es)"


def _process_limit_error() -> OSError:
    """The OSError of a fork or thread refused at the limit on processes and threads."""
    return OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


# How torch's RuntimeError for a batch that could not be received for want of descriptors starts
_TORCH_OUT_OF_FILES = "Too many open files."
# torch's RuntimeError where a worker's batch could not be given its shared memory segment,
# which torch had made (named in it, from the root of /dev/shm) and leaves behind
_TORCH_NO_SHARED_MEMORY = re.compile(
    r"unable to allocate shared memory\(shm\) for file <(/[^/<>]+)>: [^\n]*\((\d+)\)$",
    re.MULTILINE)


@dataclass(frozen=True)
class _LoadFailure:
    """A DataError met in a worker, carried (picklable) to the main process to be raised there."""
    message: str


def _ignore_stop_signals(worker_id: int) -> None:
    """Ctrl-C, scancel, systemd and a closed terminal signal the whole process group: the main
    process saves and then stops its workers itself, so a worker must not die of that signal
    first (the main process would report a dead worker instead of saving). So for SIGUSR1 /
    SIGUSR2, which ask the main process for a checkpoint (a scheduler's warning)."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, signal.SIG_IGN)


def _prepare_worker(worker_id: int) -> None:
    """Each worker's start (the DataLoader's ``worker_init_fn``)."""
    _ignore_stop_signals(worker_id)
    _forget_an_earlier_workers_marker()
    _exit_where_a_thread_cannot_start()


def _forget_an_earlier_workers_marker() -> None:
    """Remove the ``thread_not_started_marker`` of this worker's pid, left by
    an earlier worker that had the pid (pids are reused: one of an earlier loader of this
    process, whose marker nobody read or which was read already). Kept, it blamed this
    worker's own exit with ``THREAD_NOT_STARTED_EXIT`` (a dataset's, a C library's) on the
    limit on processes and threads. Removed here, before this worker can leave a marker of its
    own, a marker counts for the one worker that left it; only an exit before this point (under
    spawn or forkserver, while the worker unpickles its dataset) could still meet an earlier
    one's."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(thread_not_started_marker(os.getpid()))


# The modules whose threads a worker sends its batches with: the feeder of its queue of results
# (``Queue._feed``) and the thread that shares a batch's file descriptors (``_serve``)
_WORKER_PLUMBING_MODULES = ("multiprocessing.queues", "multiprocessing.resource_sharer")


def _exit_where_a_thread_cannot_start() -> None:
    """In a worker: a thread it sends its batches with (``_is_worker_plumbing``) that cannot start
    ends the worker at once, silently, with ``THREAD_NOT_STARTED_EXIT``, once it has left its marker
    (``thread_not_started_marker``); the main process says that as the limit on processes and
    threads (``_raise_failures``; ``loader_failures`` where torch reports it elsewhere). torch's
    worker loop let its queue's feeder thread's RuntimeError end it with a traceback, said as a
    worker death "probably out of memory"; the thread that shares a batch's file descriptors failed
    inside the feeder, which printed it and went on, and the main process waited for that batch
    forever. ``threading.Thread.start`` is replaced in the worker only, since those threads are
    started deep inside the stdlib; any other thread's error is raised as it was, so that a
    dataset's own code may catch it and go on without its thread."""
    start = threading.Thread.start

    def start_or_exit(thread: threading.Thread) -> None:
        try:
            start(thread)
        except RuntimeError as error:
            if not is_thread_not_started(error) or not _is_worker_plumbing(thread):
                raise
            _leave_thread_not_started_marker()
            os._exit(THREAD_NOT_STARTED_EXIT)
    threading.Thread.start = start_or_exit


def _is_worker_plumbing(thread: threading.Thread) -> bool:
    """Whether ``thread`` is one a worker sends its batches with: its target's module is one of
    ``_WORKER_PLUMBING_MODULES`` (a Thread's ``_target``, set until it has run)."""
    target = getattr(thread, "_target", None)
    return getattr(target, "__module__", None) in _WORKER_PLUMBING_MODULES


def _leave_thread_not_started_marker() -> None:
    """Make this worker's ``thread_not_started_marker``: a file, which needs no thread. One that
    cannot be made (the limit on open files reached too) leaves the exit said as any worker's
    unexpected exit."""
    with contextlib.suppress(OSError):
        create_empty_file(thread_not_started_marker(os.getpid()), exclusive=False)


def _collate(items: list):
    failures = [item for item in items if isinstance(item, _LoadFailure)]
    if failures:
        return failures[0]
    try:
        return default_collate(items)   # in a worker: the batch's tensors in shared memory
    except RuntimeError as error:
        _remove_unallocated_segment(error)
        raise


def _remove_unallocated_segment(error: RuntimeError) -> None:
    """Remove the shared memory segment that torch made for a batch and then could not allocate
    (``error``): torch leaves it, and a container's /dev/shm lasts as long as the container,
    so each failed run left less of it to the next. Each worker removes its own: the main
    process sees only the first worker's error."""
    failed = _TORCH_NO_SHARED_MEMORY.search(str(error))
    if failed is not None:
        # /dev/shm holds POSIX shared memory on Linux; elsewhere (no such folder) it stays
        with contextlib.suppress(OSError):
            os.unlink("/dev/shm" + failed.group(1))


class _SeededItems(torch.utils.data.Dataset):
    """Indexed by (index, epoch): loads ``dataset`` item ``index`` with its own seeded draws."""

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        load = getattr(self.dataset, "load", None)
        try:
            if load is None:    # a plain Dataset: its own randomness
                return self.dataset[index]
            return load(index, item_rng(self.seed, epoch, index))
        except DataError as error:
            return _LoadFailure(str(error))


class _EpochBatches(torch.utils.data.Sampler):
    """Batches of (index, epoch) keys from a DistributedSampler."""

    def __init__(self, sampler: DistributedSampler, batch_size: int, drop_last: bool):
        self.sampler = sampler
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.start_batch = 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        epoch = self.sampler.epoch
        for batch in itertools.islice(self.batches, self.start_batch, None):
            yield [(index, epoch) for index in batch]


def _import_what_batches_import() -> None:
    """Enter torch's record_function once before any worker starts: the DataLoader does at each
    batch, and the first time it lazily imports a profiler module that swallows every
    Exception raised while it loads. torch reports a worker killed by a signal by raising from
    its SIGCHLD handler wherever the main process is; raised inside that import, the report
    ("killed by signal: Segmentation fault") was logged as a warning with a traceback, and the
    command could only say the worker "exited unexpectedly"."""
    with torch.autograd.profiler.record_function("fastp2p: before the loader's workers"):
        pass


# Held while tempfile.tempdir names another folder, so that two loaders set up at once (in two
# threads) cannot restore each other's value: one that read the other's short base as the value
# to restore left every later temporary file of the process there, not in TMPDIR
_SWAPPING_TEMPDIR = threading.Lock()


def _share_temp_folder_with_workers() -> None:
    """Make this process's multiprocessing temporary folder (a ``pymp-*`` in TMPDIR) before any
    worker starts: the workers, started from it, use it instead of making their own, and a
    worker leaves its ``thread_not_started_marker`` there (whatever its start method). A
    worker sends each batch's tensors as file descriptors, through a socket it listens on in
    that folder; a worker killed (``close`` kills one stuck in an item; so does the
    out-of-memory killer) never removes a folder of its own, and one was left in TMPDIR by each
    such run. This process removes its folder, whatever is in it, when it exits.

    The folder is made in the first of TMPDIR and the system's temporary folders where that
    socket's path fits a socket address (``_base_for_sockets``): multiprocessing makes it in
    TMPDIR whatever its length, and a worker that could not listen there died of it while this
    process waited for its batch forever. ``tempfile.tempdir`` names that base only while
    multiprocessing makes its folder (its own call: it keeps the folder, and removes it at exit,
    as it keeps any), under a lock that other loaders being set up wait for; a temporary file
    another thread made just then would go there too. A folder multiprocessing made before
    (anything in the process may) is kept as it is, and refused where the sockets do not fit in
    it (``_refuse_a_folder_made_too_long``)."""
    with _SWAPPING_TEMPDIR:
        base = _base_for_sockets()
        was = tempfile.tempdir
        tempfile.tempdir = base
        try:
            folder = multiprocessing.util.get_temp_dir()
        finally:
            tempfile.tempdir = was
        _refuse_a_folder_made_too_long(folder)   # its advice reads TMPDIR: not the swap's base


def _refuse_a_folder_made_too_long(folder: str) -> None:
    """A ValueError where the workers' sockets do not fit in ``folder``, a multiprocessing
    temporary folder made before the first loader in a TMPDIR too long for them: the workers
    would die on it while this process waited for their batches forever. It is refused, not
    replaced by one in a shorter folder: multiprocessing keeps one folder per process (in its
    private ``_config``), and whatever made this one may be using it."""
    if _listener_fits(folder):
        return
    raise ValueError(
        f"the multiprocessing temporary folder {shown_path(folder)} "
        f"({len(os.fsencode(folder))} bytes), made in this process before the data loader, is "
        f"too long for the data loader workers' sockets: {_tmpdir_advice(tempfile.gettempdir())}")


# Where tempfile looks when none of TMPDIR, TEMP, TMP names a folder; newer Pythons'
# multiprocessing falls back on them too for a TMPDIR too long for its sockets
_SYSTEM_TEMP_FOLDERS = ("/tmp", "/var/tmp", "/usr/tmp")


def _base_for_sockets() -> str:
    """The folder for this process's multiprocessing temporary folder: tempfile's (TMPDIR)
    where the workers' sockets in it fit a socket address (or they are no file sockets:
    Windows' pipes), else the first writable system temporary folder where they fit; a
    ValueError naming TMPDIR and its length where none does."""
    base = tempfile.gettempdir()
    if _socket_fits_in(base):
        return base
    for folder in _SYSTEM_TEMP_FOLDERS:
        if os.access(folder, os.W_OK | os.X_OK) and os.path.isdir(folder) \
                and _socket_fits_in(folder):
            return folder
    raise ValueError(
        f"the temporary folder {shown_path(base)} (TMPDIR, {len(os.fsencode(base))} bytes) is "
        f"too long for the data loader workers' sockets, and none of "
        f"{', '.join(_SYSTEM_TEMP_FOLDERS)} is a writable folder where they fit: "
        f"{_tmpdir_advice(base)}")


def _tmpdir_advice(base: str) -> str:
    """What to do where the workers' sockets do not fit under ``base`` (TMPDIR's folder)."""
    return (f"set TMPDIR to a folder of at most {_longest_base(base)} bytes, or load the data "
            "in this process (--num_threads 0)")


def _longest_base(base: str) -> int:
    """The most bytes a folder like ``base`` may have for the workers' sockets to fit under a
    ``pymp-*`` folder made in it."""
    return _longest_socket_path() - (_socket_path_length(base) - len(os.fsencode(base)))


def _socket_fits_in(base: str) -> bool:
    """Whether the workers' sockets fit under a ``pymp-*`` folder made in ``base``."""
    return _listener_fits(_temp_folder_name_in(base))


def _listener_fits(folder: str) -> bool:
    """Whether a worker's socket in ``folder`` fits a socket address (or it is no file socket:
    Windows' pipes)."""
    return multiprocessing.connection.default_family != "AF_UNIX" \
        or _listener_path_length(folder) <= _longest_socket_path()


def _socket_path_length(base: str) -> int:
    """The bytes of a socket a worker listens on (its path in the address) under a ``pymp-*``
    folder in ``base``, named by the calls multiprocessing names them by (nothing made)."""
    return _listener_path_length(_temp_folder_name_in(base))


def _temp_folder_name_in(base: str) -> str:
    """A name as long as the ``pymp-*`` folder multiprocessing would make in ``base``."""
    return tempfile.mktemp(prefix="pymp-", dir=base)


def _listener_path_length(folder: str) -> int:
    """The bytes of a socket a worker listens on in ``folder``, named as multiprocessing names
    it (nothing made)."""
    return len(os.fsencode(tempfile.mktemp(prefix="listener-", dir=folder)))


@functools.cache
def _longest_socket_path() -> int:
    """The most bytes a socket's path may have here, as binding one finds it (107 on Linux,
    where the address holds 108 with the closing NUL), searched between a path that fits and
    4096 bytes (PATH_MAX), which does not."""
    fits, too_long = len(os.fsencode(os.devnull)) + 2, 4096
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if _socket_path_fits(middle):
            fits = middle
        else:
            too_long = middle
    return fits


def _socket_path_fits(length: int) -> bool:
    """Whether a socket may be bound to a path of ``length`` bytes: one under ``os.devnull``,
    no folder, so that the bind, once the length is taken, fails looking the path up
    (ENOTDIR) and makes nothing; a length refused fails first (Python's "AF_UNIX path too
    long", no errno; the system's EINVAL)."""
    devnull = os.fsencode(os.devnull) + b"/"
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.bind(devnull + b"x" * (length - len(devnull)))
        except OSError as error:
            return error.errno == errno.ENOTDIR
    return True   # bound: an os.devnull that is a folder (never met)


class _WorkersStartedWhole(DataLoader):
    """A DataLoader whose worker processes start all or none (``WorkersNotStarted``).

    torch's iterator starts them one by one in its constructor; one that fails there leaves the
    workers already started running, unknown to anyone (its ``__del__`` then fails on attributes
    the constructor never set, a traceback), so the iterator is constructed here, where it can
    be reached when its constructor fails."""

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        iterator = _MultiProcessingDataLoaderIter.__new__(_MultiProcessingDataLoaderIter)
        try:
            iterator.__init__(self)
        except BaseException as error:   # a Ctrl-C meanwhile leaves them running too
            _kill_started_workers(iterator)
            if is_thread_not_started(error):   # a feeder thread of the queues that send work
                raise WorkersNotStarted(_process_limit_error(), self.num_workers) from error
            if isinstance(error, OSError):
                raise WorkersNotStarted(error, self.num_workers) from error
            raise
        return iterator

    def check_worker_number_rationality(self) -> None:
        """torch's warning that the workers outnumber the cores ("excessive worker creation
        might get DataLoader running slow or even freeze"), only past the workers --num_threads
        takes (``cpu_info.most_loader_workers``: on fewer cores, 4, the reference's default,
        which only take turns on them), and only from the constructor: torch's
        ``_get_iterator``, which this one replaces, warned a second time."""
        if self.num_workers > cpu_info.most_loader_workers(cpu_info.usable_cpus()):
            super().check_worker_number_rationality()


def _kill_started_workers(iterator) -> None:
    """Kill (they ignore SIGTERM) and reap the workers a failed iterator constructor started,
    and mark it shut down, so that its ``__del__`` touches nothing it lacks. Their pids leave
    torch's record of them (kept by ``id(iterator)``) first: its shutdown, which does that,
    is not run, and a later iterator at the same address failed to record its own ("should
    be called only once")."""
    if getattr(iterator, "_worker_pids_set", False):
        torch.utils.data._utils.signal_handling._remove_worker_pids(id(iterator))
        iterator._worker_pids_set = False
    iterator._shutdown = True
    for worker in getattr(iterator, "_workers", ()):
        worker.kill()
        worker.join()


class PairLoader:
    """Iterable of batched dicts ``{"A": NxCxHxW, "B": ..., "A_paths": [...],
    "B_paths": [...]}``."""

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, num_workers: int, seed: int,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 pin_memory: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty: nothing to load")
        self.dataset = dataset
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed, drop_last=False)
        self.batch_sampler = _EpochBatches(self.sampler, batch_size, drop_last)
        # pin only where there is a device to pin for (torch warns and ignores it otherwise)
        pin = pin_memory and torch.cuda.is_available()
        if num_workers > 0:
            _import_what_batches_import()
            _share_temp_folder_with_workers()
        self._loader = _WorkersStartedWhole(
            _SeededItems(dataset, seed), batch_sampler=self.batch_sampler, collate_fn=_collate,
            num_workers=num_workers, worker_init_fn=_prepare_worker, pin_memory=pin,
            persistent_workers=num_workers > 0)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start_batch`` on (a resume in the middle of
        an epoch: the batches before it are not loaded; ``len`` stays the whole epoch's)."""
        self.sampler.set_epoch(epoch)
        self.batch_sampler.start_batch = start_batch

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def close(self) -> None:
        """Stop the worker processes now, within about a second. They ignore the stop signals
        (``_ignore_stop_signals``) that multiprocessing's exit hook stops them with, so a
        command leaving by an exception whose traceback keeps the iterator alive (its output
        pipe closed, say) would otherwise wait for them forever at exit.

        A worker still loading an item (a slow image, a slow network file system) is killed,
        not waited for: no later batch is used (``_stop_workers``). A worker that dies meanwhile
        (killed while it loaded a batch that is never used) is no error: torch reports no death
        once ``_stop_workers`` has begun, and a report its SIGCHLD handler raises just before
        (wherever the main process is) is dropped; torch's shutdown, in the ``finally``, still
        stops the other workers."""
        iterator = self._loader._iterator  # persistent workers' iterator (torch keeps it here)
        if iterator is not None:
            try:
                try:
                    _stop_workers(iterator)
                finally:
                    iterator._shutdown_workers()
            except RuntimeError as err:
                if not str(err).startswith("DataLoader worker"):   # torch's report of a death
                    raise
            self._loader._iterator = None

    def __iter__(self):
        # the DataLoader iterator is made here, not lazily: making it draws worker seeds from
        # torch's RNG, and the trainer restores its RNG state after calling iter(loader); the
        # first call starts the workers (WorkersNotStarted)
        return _raise_failures(iter(self._loader), self._loader.num_workers)


# How long an idle worker gets to exit by itself once asked to, before it counts as busy.
_WORKER_EXIT_GRACE_S = 0.5


def _stop_workers(iterator) -> None:
    """Torch's ``_shutdown_workers`` up to its joins, in its order (the pin-memory thread ended,
    the workers asked to stop), then a kill for each worker still loading an item after
    ``_WORKER_EXIT_GRACE_S``; torch's shutdown, called next, repeats those steps harmlessly
    and finds every worker gone. Torch alone would join a busy worker for 5 s, send it the
    SIGTERM ours ignore, join it 5 s more and leave it running, and multiprocessing's exit hook
    would then wait for its item, however long it takes. A worker holds nothing of ours (each
    batch used has been received), so a kill loses nothing."""
    if iterator._shutdown:   # by torch's exit hook (an exit hook registered before it runs after)
        return
    if iterator._worker_pids_set:   # no report of a death from here on: the kills are ours
        torch.utils.data._utils.signal_handling._remove_worker_pids(id(iterator))
        iterator._worker_pids_set = False
    # A worker killed while writing to the queue of results could leave half a message in it,
    # or its lock held. The pin-memory thread reads that queue, so it ends first; nothing reads
    # it afterwards, and a write to it (torch's wake-up again) waits in a daemon feeder thread,
    # which the exit does not join.
    if hasattr(iterator, "_pin_memory_thread"):
        iterator._pin_memory_thread_done_event.set()
        iterator._worker_result_queue.put((None, None))   # wakes it up to see the event
        iterator._pin_memory_thread.join()
    iterator._workers_done_event.set()
    for worker_id in range(len(iterator._workers)):
        iterator._mark_worker_as_unavailable(worker_id, shutdown=True)   # sends it None
    running = {worker.sentinel: worker for worker in iterator._workers}
    deadline = time.monotonic() + _WORKER_EXIT_GRACE_S
    while running and (left := deadline - time.monotonic()) > 0:
        for sentinel in multiprocessing.connection.wait(list(running), timeout=left):
            del running[sentinel]
    for worker in running.values():
        worker.kill()


def _raise_failures(batches, workers: int):
    """``batches``, with a worker's load failure raised as its DataError, and torch's
    RuntimeErrors for a limit the workers reached as a LoaderWorkersFailed
    (``_limit_reached``, ``_threads_not_started``)."""
    try:
        for batch in batches:
            if isinstance(batch, _LoadFailure):
                raise DataError(batch.message)
            yield batch
    except RuntimeError as error:
        reached = _limit_reached(error, workers) or _threads_not_started(batches, workers)
        if reached is None:
            raise
        raise reached from error


def _limit_reached(error: RuntimeError, workers: int) -> LoaderWorkersFailed | None:
    """``error``, torch's, as the limit the loader's ``workers`` reached: the open-files limit
    (BatchesNotReceived) or a full shared memory (SharedMemoryFull); None for any other."""
    if str(error).startswith(_TORCH_OUT_OF_FILES):
        return BatchesNotReceived(OSError(errno.EMFILE, os.strerror(errno.EMFILE)), workers)
    no_shared_memory = _TORCH_NO_SHARED_MEMORY.search(str(error))
    if no_shared_memory is not None:
        number = int(no_shared_memory.group(2))
        return SharedMemoryFull(OSError(number, os.strerror(number)), workers)
    return None


def _threads_not_started(iterator, workers: int) -> WorkerThreadsNotStarted | None:
    """A WorkerThreadsNotStarted where a worker of ``iterator`` (torch's) exited with
    ``THREAD_NOT_STARTED_EXIT`` and left its marker (a dataset's own exit with that code
    leaves none): torch reports it as a worker that "exited unexpectedly"."""
    if not any(worker.exitcode == THREAD_NOT_STARTED_EXIT and said_thread_not_started(worker.pid)
               for worker in getattr(iterator, "_workers", ())):
        return None
    return WorkerThreadsNotStarted(_process_limit_error(), workers)


def create_dataloader(dataset, batch_size: int, *, shuffle: bool, num_workers: int, seed: int,
                      rank: int = 0, world_size: int = 1, drop_last: bool = False,
                      pin_memory: bool = False) -> PairLoader:
    """Batches of ``dataset`` for rank ``rank`` of ``world_size``; call ``set_epoch`` each epoch.

    Pass ``shuffle=not args.serial_batches`` to follow the reference's option.
    """
    return PairLoader(dataset, batch_size, shuffle=shuffle, num_workers=num_workers, seed=seed,
                      rank=rank, world_size=world_size, drop_last=drop_last,
                      pin_memory=pin_memory)
