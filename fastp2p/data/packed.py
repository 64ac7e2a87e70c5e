"""Reading the pairs of what ``fastp2p pack`` wrote: ``PackedDataset``. The folder's layout,
its index and the checks on them are in ``fastp2p.data.packed_index``.

A pair is read by one positioned read (``os.preadv``) of its row out of the shard, straight into
the array it goes to: no decoding in the training loop. Only the crop, flip and normalization
remain to be done (here, or on the GPU: ``fastp2p.data.gpu_augment`` takes the uint8 batches of
``read_batch``).

The first time a process opens a shard it checks the shard's CRC32 (one pass over its bytes, once
per process: see benchmarks/NOTES.md for the cost), so a damaged shard stops training before any
of its pairs is used. Reads then compare the open file's size and change times with those the
check saw (one ``fstat`` per pair read, or per shard a batch read from): a shard truncated or
rewritten in place since is checked again, and reported as the pack rewritten only if its bytes
are no longer those of the index (a memory map would have died of SIGBUS on the truncated pages,
or gone on reading the new pixels). A shard whose metadata alone moves (a `touch`, a `chmod`, a
backup tool's hard link) reads on; one whose size or change times move during each of a few
checks in a row is refused as one that keeps changing.

A dataset holds only the shards it read last open (``open_shards_capacity``, 128 at `ulimit -n`
1024): a pack of thousands of shards would otherwise run the process out of descriptors. A shard
dropped and read again is reopened, not checked again, unless its file changed meanwhile.
"""
import bisect
import collections
import errno
import math
import operator
import os
import resource
import stat
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fastp2p.data.errors import DataError, counted
from fastp2p.data.folder_lock import ReadingLock
from fastp2p.data.packed_index import (INDEX_NAME, STATE_NAME, check_shard_size,
                                       not_a_regular_file, pack_command_line, pair_shape,
                                       read_index, refuse_preprocess, repack_command_line,
                                       repack_hint, stored_files)
from fastp2p.file_reads import open_descriptor_to_read, read_error_advice
from fastp2p.fork_safe import ForkSafeLock

if TYPE_CHECKING:   # transforms imports Pillow, which reading and verifying a pack do not need
    from fastp2p.data.transforms import Preprocess


def _identity(path: Path) -> tuple | None:
    """What changes when ``path`` is replaced or rewritten; None if it is gone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _open_identity(fd: int) -> tuple:
    """What changes when the open file ``fd`` is truncated, written, or unlinked (its ctime)."""
    info = os.fstat(fd)
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns


_CRC_BLOCK = 1 << 22    # bytes read per step of a shard's CRC32 pass
# checks of a shard whose size or change times move under each one (a `touch`, a `chmod`, a
# backup tool's hard link) before it is refused as one that keeps changing
_CHECKS = 5
_PREADV = getattr(os, "preadv", None)   # os.pread (one more copy) where it is missing


def _read_at(fd: int, target: np.ndarray, offset: int) -> int:
    """Read ``target.nbytes`` bytes at ``offset`` into C-contiguous ``target`` (releasing the GIL);
    the count read, short only at the end of the file (a file system's short read is resumed)."""
    got = _PREADV(fd, [target], offset) if _PREADV is not None else 0
    if got == target.nbytes:
        return got      # all at once, as local file systems read
    flat = target.reshape(-1)
    while got < flat.size:
        if _PREADV is not None:
            step = _PREADV(fd, [flat[got:]], offset + got)
        else:
            data = os.pread(fd, flat.size - got, offset + got)
            step = len(data)
            flat[got:got + step] = np.frombuffer(data, dtype=np.uint8)
        if step == 0:
            break
        got += step
    return got


class _BytesDiffer(Exception):
    """A shard's bytes are not the index's (its size, its CRC32, or it is gone): the message
    for a shard this process had not checked before, which ``_open_checked`` words as the pack
    rewritten for one it had."""


class _ShardFile:
    """One shard open for reading: its path, its descriptor (closed when the last reader drops
    it, so never under a read in another thread), its row size, and the open identity it had when
    its CRC32 was checked."""
    __slots__ = ("path", "fd", "row_bytes", "identity")

    def __init__(self, path: Path, row_bytes: int):
        self.path, self.fd, self.row_bytes, self.identity = path, -1, row_bytes, None
        # a FIFO put at its name after check_shard_size would block a plain open until
        # something wrote into it (_open_shard refuses it by its fstat)
        self.fd = open_descriptor_to_read(path)

    def close(self, _close=os.close) -> None:  # os.close kept for a late __del__ at exit
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _close(fd)

    __del__ = close


MAX_OPEN_SHARDS = 4096   # 1 TB of pairs at the default shard size


def open_shards_capacity() -> int:
    """Shard files a PackedDataset holds open: 1/8 of this process's soft limit on open files
    (`ulimit -n`; 128 at the usual 1024), at most MAX_OPEN_SHARDS, at least 2. A pack of
    thousands of shards (half a million pairs at the default shard size, twice the files with
    --gray) so leaves descriptors for the rest of the process: checkpoints, the other phase's
    pack, reader threads each holding the shard it reads. Past it, a read of a dropped shard
    costs about 20 us more (its reopen), against about 55 us to read a 286x572 pair from the
    page cache (both measured on a 2-core AMD EPYC) and more from a disk."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN_SHARDS
    return max(2, min(MAX_OPEN_SHARDS, soft // 8))


class _OpenShards:
    """The shards a PackedDataset holds open, at most ``capacity``: opening one more drops the
    least recently read, whose descriptor closes once no reader thread holds it. Reopening a
    dropped shard costs an open and a few stats, not its CRC32 again, unless its file changed
    (``PackedDataset._verified``). Thread-safe. A copy (pickled for a worker process) starts
    with none open and the capacity of the process it is in."""

    def __init__(self):
        self.capacity = open_shards_capacity()
        self._files = collections.OrderedDict()     # (prefix, shard number) -> _ShardFile
        self._guard = ForkSafeLock()   # a forked loader worker reads through it too

    def get(self, key: tuple) -> "_ShardFile | None":
        with self._guard:
            opened = self._files.get(key)
            if opened is not None:
                self._files.move_to_end(key)
            return opened

    def add(self, key: tuple, opened: _ShardFile) -> None:
        with self._guard:
            self._files[key] = opened
            self._files.move_to_end(key)
            while len(self._files) > self.capacity:
                self._files.popitem(last=False)

    def discard(self, key: tuple, stale: _ShardFile) -> None:
        """Drop ``stale`` unless another reader thread has already replaced it."""
        with self._guard:
            if self._files.get(key) is stale:
                del self._files[key]

    def __reduce__(self):
        return _OpenShards, ()


class PackedDataset(torch.utils.data.Dataset):
    """Pairs from one packed phase folder, preprocessed like the folder datasets.

    While it lives (or until ``close``) it holds the pack's reading lock (``folder_lock``):
    `fastp2p pack` refuses to rewrite the pack under it; a pack it refuses (DataError from the
    constructor) it lets go of as it raises. A shard found changed anyway (a pack
    copied over it, a read-only pack no lock guards) is said to be rewritten when index.json
    changed since it was read, or when the shard changed after this process had checked it (in
    place, as `cp` or a truncation does, found at the next read of it), and damaged otherwise;
    deleted or moved, instead of rewritten, when the shard (or the pack folder) is gone and no
    other index.json came in its place;
    one an NFS server says is stale (ESTALE), to be rewritten on another machine. An OS error
    of a shard says what to do by its errno (``read_error_advice``).
    Reads are thread-safe (positioned reads, no shared file offset)."""

    def __init__(self, phase_dir: Path, config: "Preprocess", swap: bool,
                 limit: int | None = None):
        self.phase_dir = Path(phase_dir)
        # locked before the index is read: the index and the shards stay as read
        self._lock = ReadingLock(self.phase_dir)
        try:
            self._open(config, swap, limit)
        except BaseException:
            # a refused pack is let go of at once, not when this half-built object is
            # collected (the error's traceback holds it): the repack the error suggests
            # may run next, in this process too
            self._lock.close()
            raise

    def _open(self, config: "Preprocess", swap: bool, limit: int | None) -> None:
        """Read the index and check it against ``config`` and the shards' sizes."""
        self._index_identity = _identity(self.phase_dir / INDEX_NAME)
        self.index = read_index(self.phase_dir)
        self.shape = pair_shape(self.index)
        stored = self.index["width"]
        refuse_preprocess(self.phase_dir, stored, config.mode)
        if config.load_size > stored:
            sizes = (f"--load_size {stored} (or less)" if config.crop_size <= stored
                     else f"--load_size and --crop_size of at most {stored}")
            repack = repack_command_line(self.phase_dir, self.index, config.load_size)
            raise DataError(f"{self.phase_dir}: packed at load_size {stored}, smaller than "
                            f"--load_size {config.load_size}; pass {sizes}, or repack at that "
                            f"size: `{repack}`")
        # a smaller --load_size resizes the stored halves again (bicubic) before the crop: the
        # pixels are resampled twice, so close to, not equal to, the folders' single resize
        self.resize_to = config.load_size if config.load_size < stored else None
        # the reference converts to grayscale before its resize: that is only in a --gray pack
        if 1 in (config.a_channels, config.b_channels) and not self.index.get("gray"):
            raise DataError(f"{self.phase_dir}: packed without --gray, but --input_nc 1 / "
                            "--output_nc 1 take each half to grayscale before its resize; "
                            f"repack with `{pack_command_line(self.phase_dir, self.index)} "
                            "--gray`, or point --dataroot at the image folders")
        self.config = config
        self.swap = swap
        self.shards = self.index["shards"]
        # first pair of each shard (shards may hold fewer pairs when --skip-bad dropped some)
        self.shard_starts = np.cumsum([0] + [s["count"] for s in self.shards])[:-1].tolist()
        self.shapes = dict(stored_files(self.index))
        # (prefix, shard number) -> its file's path, made once: a shard _OpenShards dropped is
        # opened again by it
        self._paths = {(prefix, number): self.phase_dir / shard[prefix + "file"]
                       for number, shard in enumerate(self.shards) for prefix in self.shapes}
        for (prefix, number), path in self._paths.items():
            check_shard_size(path, self.shards[number]["count"], self.shapes[prefix], self.index)
        self.length = self.index["count"] if limit is None else min(limit, self.index["count"])
        self.dataroot = Path(self.index["dataroot"])
        self._files = _OpenShards()
        # (prefix, shard number) -> the open identity its file had when this process (or the one
        # it was copied from) checked its CRC32
        self._verified = {}

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        """Release the pack's reading lock now (also done when the dataset is collected, and
        at exit); the dataset still reads, unguarded."""
        self._lock.close()

    def _shard(self, number: int, prefix: str = "") -> _ShardFile:
        """Shard ``number`` open and checked: the colour one, or with ``prefix`` "gray_" the
        grayscale one of a --gray pack."""
        key = prefix, number
        opened = self._files.get(key)
        if opened is None:
            opened = self._open_checked(key)
            self._files.add(key, opened)
        return opened

    def _open_checked(self, key: tuple) -> _ShardFile:
        shard = self.shards[key[1]]
        path = self._paths[key]
        try:
            return self._open_shard(key, path, shard)
        except FileNotFoundError:   # removed since check_shard_size found it: missing, as it says
            error = _BytesDiffer(f"{path}: shard missing (removed while the pack was read); "
                                 f"restore it, or {repack_hint(self.phase_dir, self.index)}")
        except (_BytesDiffer, OSError) as caught:
            error = caught
        # index.json replaced, or a shard this process checked before no longer the index's:
        # the pack changed while it was read
        if (_identity(self.phase_dir / INDEX_NAME) != self._index_identity
                or key in self._verified and isinstance(error, _BytesDiffer)):
            raise self._rewritten(path)
        if isinstance(error, OSError):  # its cause, and what to do for it
            raise self._os_error(path, error, "cannot read this shard")
        raise DataError(str(error))

    def _rewritten(self, path: Path) -> DataError:
        if self._gone(path):    # starting the training again alone cannot help
            return self._deleted(path)
        return DataError(f"{self.phase_dir}: the pack was rewritten while it was read ({path.name} "
                         f"no longer matches the {INDEX_NAME} read at the start); start the "
                         "training again (`--continue_train` resumes it from its last "
                         "checkpoint)")

    def _gone(self, path: Path) -> bool:
        """Whether shard ``path`` was deleted or moved, not rewritten: it is gone, and no pack
        wrote another index.json since this one was read, nor is writing one (its state file)."""
        return (not os.path.lexists(path)
                and _identity(self.phase_dir / INDEX_NAME) in (None, self._index_identity)
                and not os.path.lexists(self.phase_dir / STATE_NAME))

    def _deleted(self, path: Path) -> DataError:
        """A shard this process read (or the whole pack folder) gone since it read the index:
        the pack must be put back or made again before the training can go on."""
        what = ("the pack was deleted (or moved)" if not self.phase_dir.is_dir()
                else f"{path.name} was deleted (or moved)")
        return DataError(f"{self.phase_dir}: {what} while it was read; move it back or pack it "
                         f"again (`{pack_command_line(self.phase_dir, self.index)}`), then start "
                         "the training again (`--continue_train` resumes it from its last "
                         "checkpoint)")

    @staticmethod
    def _os_error(path: Path, error: OSError, failed: str) -> DataError:
        """``error`` of opening or reading shard ``path`` in one line: ``failed`` (what was
        done), its errno's words, and what to do for that errno (``read_error_advice``)."""
        if error.errno == errno.ESTALE:     # NFS: another machine replaced or removed it
            return DataError(f"{path}: this shard was replaced or removed on the file server "
                             f"while it was read ({os.strerror(errno.ESTALE)}, NFS): the pack "
                             "was rewritten on another machine; start the training again once "
                             "that is done (`--continue_train` resumes it from its last "
                             "checkpoint)")
        reason = os.strerror(error.errno) if error.errno else str(error)
        advice = read_error_advice(error)
        return DataError(f"{path}: {failed} ({reason}); {advice + ', then ' if advice else ''}"
                         "start the training again (`--continue_train` resumes it from its last "
                         "checkpoint)")

    def _keeps_changing(self, path: Path) -> DataError:
        return DataError(f"{path}: this shard keeps changing while it is read (its size or change "
                         f"times moved during each of {_CHECKS} checks, which found its bytes "
                         f"still those of {INDEX_NAME}); stop what touches it (a touch or chmod "
                         "in a loop, a backup tool), then start the training again "
                         "(`--continue_train` resumes it from its last checkpoint)")

    def _open_shard(self, key: tuple, path: Path, shard: dict) -> _ShardFile:
        """Open shard ``key`` and check its CRC32 unless this process checked it with the same
        open identity. _BytesDiffer when its bytes are not the index's; checked again when only
        its metadata moved during the check, up to _CHECKS times."""
        count, shape = shard["count"], self.shapes[key[0]]
        reopened = self._reopen(key, path, math.prod(shape))
        if reopened is not None:
            return reopened
        try:    # for its message; the fd's size below
            check_shard_size(path, count, shape, self.index)
        except DataError as error:
            raise _BytesDiffer(str(error)) from None
        opened = _ShardFile(path, math.prod(shape))
        size = count * opened.row_bytes
        try:
            if not stat.S_ISREG(os.fstat(opened.fd).st_mode):  # swapped in since the size check
                raise _BytesDiffer(f"{path}: shard is not a regular file "
                                   f"({not_a_regular_file(path) or 'a special file'}); move it "
                                   "out of the pack folder, then "
                                   f"{repack_hint(self.phase_dir, self.index)}")
            for _ in range(_CHECKS):
                before = _open_identity(opened.fd)
                if before[0] != size:   # changed since check_shard_size
                    raise _BytesDiffer(f"{path}: shard is {before[0]} bytes, expected {size}; "
                                       f"{repack_hint(self.phase_dir, self.index)}")
                if self._verified.get(key) == before:
                    break
                crc = self._crc32(opened.fd, size)
                if crc is None or crc != shard[key[0] + "crc32"]:
                    raise _BytesDiffer(f"{path}: shard checksum (CRC32) does not match "
                                       f"{INDEX_NAME}: the file is damaged or changed since "
                                       f"packing; {repack_hint(self.phase_dir, self.index)}")
                if _open_identity(opened.fd) == before:  # nothing written during the check
                    self._verified[key] = before
                    break
            else:
                raise self._keeps_changing(path)
        except BaseException:
            opened.close()
            raise
        opened.identity = before
        return opened

    def _reopen(self, key: tuple, path: Path, row_bytes: int) -> _ShardFile | None:
        """Shard ``key`` opened again after _OpenShards dropped it: one open and one fstat, if it
        is still the regular file this process checked; None (for ``_open_shard``'s checks, and
        their messages) if it was never checked, changed since, or fails to open."""
        verified = self._verified.get(key)
        if verified is None:
            return None
        try:
            opened = _ShardFile(path, row_bytes)
        except OSError:
            return None
        info = os.fstat(opened.fd)
        if stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns,
                                           info.st_ctime_ns) == verified:
            opened.identity = verified
            return opened
        opened.close()
        return None

    @staticmethod
    def _crc32(fd: int, size: int) -> int | None:
        """CRC32 of the first ``size`` bytes of ``fd``; None if it holds fewer. zlib and the reads
        release the GIL, so the GPU loader's reader thread checks in parallel with training."""
        block = np.empty(min(size, _CRC_BLOCK), dtype=np.uint8)
        crc = offset = 0
        while offset < size:
            part = block[:min(block.size, size - offset)]
            got = _read_at(fd, part, offset)
            if got == 0:
                return None
            crc = zlib.crc32(part[:got], crc)
            offset += got
        return crc

    def _read_row(self, shard_number: int, row: int, target: np.ndarray,
                  prefix: str = "") -> None:
        """Row ``row`` of the shard into C-contiguous ``target`` (its size): one positioned read,
        then one fstat that tells an in-place change since the CRC32 check."""
        opened = self._shard(shard_number, prefix)
        try:
            if (_read_at(opened.fd, target, row * opened.row_bytes) != opened.row_bytes
                    or _open_identity(opened.fd) != opened.identity):
                self._read_again(opened, shard_number, row, target, prefix)
        except OSError as error:    # of this shard's file, in _read_again too
            raise self._os_error(opened.path, error, "reading this shard failed") from None

    def _read_again(self, stale: _ShardFile, shard_number: int, row: int, target: np.ndarray,
                    prefix: str = "") -> None:
        """A read from ``stale`` came short or found the file changed: open and check the shard
        again (the rewritten error only if its bytes are no longer the index's: a `touch` or a
        `chmod` reads on), and read the row from it, up to _CHECKS times while the file changes
        under the read. Another reader thread may have done so already; the stale file closes
        when the last thread reading it drops it."""
        key = prefix, shard_number
        for _ in range(_CHECKS):
            self._files.discard(key, stale)
            opened = self._shard(shard_number, prefix)
            got = _read_at(opened.fd, target, row * opened.row_bytes)
            if _open_identity(opened.fd) == opened.identity:  # read as checked
                if got != opened.row_bytes:     # shorter than the index, its stat unchanged
                    raise self._rewritten(opened.path)
                return
            stale = opened
        raise self._keeps_changing(stale.path)

    def _locate(self, index: int) -> tuple[int, int]:
        # a Python int from here on: an int32 index (numpy, torch) would wrap the row's offset
        # past 2 GiB
        index = operator.index(index)
        if not 0 <= index < self.length:
            raise IndexError(f"pair {index} out of range for {counted(self.length, 'pair')}")
        shard = bisect.bisect_right(self.shard_starts, index) - 1
        return shard, index - self.shard_starts[shard]

    def read_raw(self, index: int, prefix: str = "") -> np.ndarray:
        """The stored uint8 H x 2W x 3 pair (read into a new array); with ``prefix`` "gray_",
        its H x 2W grayscale version (a --gray pack)."""
        shard, row = self._locate(index)
        pair = np.empty(self.shapes[prefix], dtype=np.uint8)
        self._read_row(shard, row, pair, prefix)
        return pair

    def read_batch(self, indices, out: torch.Tensor | None = None) -> torch.Tensor:
        """Stored pairs ``indices`` as one uint8 (N, H, 2W, 3) tensor (into ``out`` if given,
        e.g. pinned memory): each pair read straight into its slot, nothing else."""
        if self.resize_to is not None:
            raise ValueError(f"read_batch gives the pairs as stored ({self.shape[0]} high), but "
                             f"--load_size {self.resize_to} resizes them again; read items")
        indices = list(indices)
        if out is None:
            out = torch.empty((len(indices), *self.shape), dtype=torch.uint8)
        if tuple(out.shape) != (len(indices), *self.shape) or out.dtype != torch.uint8:
            raise ValueError(f"out must be uint8 {(len(indices), *self.shape)}, got "
                             f"{out.dtype} {tuple(out.shape)}")
        target = out.numpy()
        if not target.flags.c_contiguous:   # a strided ``out``: each pair read whole, then placed
            for slot, index in enumerate(indices):
                target[slot] = self.read_raw(index)
            return out
        # the loop of _read_row shard by shard, with one fstat per shard after its reads (not one
        # per pair): a change before or during a read shows in it all the same. One shard at a
        # time: this thread holds no more open files than _OpenShards keeps.
        rows_of = {}
        for slot, index in enumerate(indices):
            shard, row = self._locate(index)
            rows_of.setdefault(shard, []).append((slot, row))
        try:    # an OSError is of ``opened``'s shard (_shard gives DataErrors only)
            for shard, rows in rows_of.items():
                opened, read = self._shard(shard), []
                for slot, row in rows:
                    if (_read_at(opened.fd, target[slot], row * opened.row_bytes)
                            == opened.row_bytes):
                        read.append((slot, row))
                    else:
                        self._read_again(opened, shard, row, target[slot])
                if _open_identity(opened.fd) != opened.identity:
                    for slot, row in read:
                        self._read_again(opened, shard, row, target[slot])
        except OSError as error:
            raise self._os_error(opened.path, error, "reading this shard failed") from None
        return out

    def source_paths(self, index: int) -> tuple[str, str]:
        """(A, B) file paths of pair ``index`` as the folder dataset names them (before swap)."""
        a_rel, b_rel = self.index["sources"][index]
        return str(self.dataroot / a_rel), str(self.dataroot / b_rel)

    def __getitem__(self, index: int) -> dict:
        import random
        return self.load(index, random)

    def load(self, index: int, rng) -> dict:
        from fastp2p.data.transforms import (crop_flip_uint8, draw_params,  # see TYPE_CHECKING
                                             resize_uint8)

        channels = {"A": self.config.a_channels, "B": self.config.b_channels}
        pairs = {count: self.read_raw(index, "" if count == 3 else "gray_")
                 for count in set(channels.values())}
        width = self.shape[1] // 2
        sides = {"A": slice(0, width), "B": slice(width, None)}
        a_path, b_path = self.source_paths(index)
        if self.swap:
            sides = {"A": sides["B"], "B": sides["A"]}
            a_path, b_path = b_path, a_path
        halves = {name: pairs[channels[name]][:, sides[name]] for name in ("A", "B")}
        if self.resize_to is not None:
            halves = {name: resize_uint8(half, self.resize_to) for name, half in halves.items()}
        size = self.resize_to or width
        params = draw_params(self.config, size, size, rng)
        item = {name: crop_flip_uint8(half, self.config, params)
                for name, half in halves.items()}
        return {**item, "A_paths": a_path, "B_paths": b_path}
