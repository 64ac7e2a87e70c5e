"""Reading the pairs of what ``fastp2p pack`` wrote: ``PackedDataset``. The folder's layout,
its index and the checks on them are in ``fastp2p.data.packed_index``.

A pair is read by memory-mapping its shard and copying one row: no decoding in the training
loop. Only the crop, flip and normalization remain to be done (here, or on the GPU:
``fastp2p.data.gpu_augment`` takes the uint8 batches of ``read_batch``).

The first time a process maps a shard it checks the shard's CRC32 (one pass over its bytes, once
per process: see benchmarks/NOTES.md for the cost), so a damaged shard stops training before any
of its pairs is used.
"""
import bisect
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fastp2p.data.errors import DataError, counted
from fastp2p.data.folder_lock import ReadingLock
from fastp2p.data.packed_index import (INDEX_NAME, check_shard_size, pack_command_line,
                                       pair_shape, read_index, repack_hint, stored_files)

if TYPE_CHECKING:   # transforms imports Pillow, which reading and verifying a pack do not need
    from fastp2p.data.transforms import Preprocess


def _identity(path: Path) -> tuple | None:
    """What changes when ``path`` is replaced or rewritten; None if it is gone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


class PackedDataset(torch.utils.data.Dataset):
    """Pairs from one packed phase folder, preprocessed like the folder datasets.

    While it lives (or until ``close``) it holds the pack's reading lock (``folder_lock``):
    `fastp2p pack` refuses to rewrite the pack under it; a pack it refuses (DataError from the
    constructor) it lets go of as it raises. A shard found changed anyway (a pack
    copied over it, a read-only pack no lock guards) is said to be rewritten when index.json
    changed since it was read, and damaged otherwise."""

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
        # Pairs are stored as resize_and_crop sees them after its resize; any other mode would
        # need the original pixels (crop, none) or per-image sizes (scale_width*).
        if config.mode != "resize_and_crop":
            raise DataError(f"{self.phase_dir}: packed pairs were resized to {stored}x{stored} "
                            f"at pack time, which only --preprocess resize_and_crop expects (not "
                            f"{config.mode}); point --dataroot at the image folders instead")
        if config.load_size > stored:
            sizes = (f"--load_size {stored} (or less)" if config.crop_size <= stored
                     else f"--load_size and --crop_size of at most {stored}")
            repack = pack_command_line(self.phase_dir, dict(self.index,
                                                            load_size=config.load_size))
            raise DataError(f"{self.phase_dir}: packed at load_size {stored}, smaller than "
                            f"--load_size {config.load_size}; pass {sizes}, or repack at that "
                            f"size: `{repack} --overwrite`")
        # a smaller --load_size resizes the stored halves again (bicubic) before the crop: the
        # pixels are resampled twice, so close to, not equal to, the folders' single resize
        self.resize_to = config.load_size if config.load_size < stored else None
        # the reference converts to grayscale before its resize: that is only in a --gray pack
        if 1 in (config.a_channels, config.b_channels) and not self.index.get("gray"):
            raise DataError(f"{self.phase_dir}: packed without --gray, but --input_nc 1 / "
                            "--output_nc 1 take each half to grayscale before its resize; "
                            f"repack with `{pack_command_line(self.phase_dir, self.index)} "
                            "--gray`, or point --dataroot at the image folders")
        # its colour shards hold grayscale images among colour ones, which the folders refuse
        # for 3-channel use too
        if 3 in (config.a_channels, config.b_channels) and self.index.get("gray_among_colour"):
            raise DataError(f"{self.phase_dir}: packed from grayscale among colour images, "
                            "which only --input_nc 1 --output_nc 1 take (as from the image "
                            "folders); pass both, or convert the images to one kind and "
                            "repack")
        self.config = config
        self.swap = swap
        self.shards = self.index["shards"]
        # first pair of each shard (shards may hold fewer pairs when --skip-bad dropped some)
        self.shard_starts = np.cumsum([0] + [s["count"] for s in self.shards])[:-1].tolist()
        self.shapes = dict(stored_files(self.index))
        for shard in self.shards:
            for prefix, shape in self.shapes.items():
                check_shard_size(self.phase_dir / shard[prefix + "file"], shard["count"], shape,
                                 self.index)
        self.length = self.index["count"] if limit is None else min(limit, self.index["count"])
        self.dataroot = Path(self.index["dataroot"])
        self._maps = {}         # (prefix, shard number) -> its memory map
        self._verified = set()  # (prefix, shard number)s whose CRC32 this process checked

    def __len__(self) -> int:
        return self.length

    def close(self) -> None:
        """Release the pack's reading lock now (also done when the dataset is collected, and
        at exit); the dataset still reads, unguarded."""
        self._lock.close()

    def __getstate__(self):
        # memory maps are reopened in each worker process, never pickled (that would copy them);
        # the reading lock pickles as none (it stays with this process)
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _shard(self, number: int, prefix: str = "") -> np.memmap:
        """Shard ``number``'s memory map: the colour one, or with ``prefix`` "gray_" the
        grayscale one of a --gray pack."""
        key = prefix, number
        if key not in self._maps:
            shard = self.shards[number]
            path = self.phase_dir / shard[prefix + "file"]
            try:
                pairs = self._map_checked(key, path, shard)
            except (OSError, DataError) as error:
                if _identity(self.phase_dir / INDEX_NAME) != self._index_identity:
                    raise DataError(
                        f"{self.phase_dir}: the pack was rewritten while it was read ({path.name} "
                        f"no longer matches the {INDEX_NAME} read at the start); start the "
                        "training again (`--continue_train` resumes it from its last "
                        "checkpoint)") from None
                if isinstance(error, OSError):
                    raise DataError(f"{path}: cannot read this shard ({error.strerror or error}); "
                                    "make it readable, or "
                                    f"{repack_hint(self.phase_dir, self.index)}") from None
                raise
            self._verified.add(key)
            self._maps[key] = pairs
        return self._maps[key]

    def _map_checked(self, key: tuple, path: Path, shard: dict) -> np.memmap:
        count, shape = shard["count"], self.shapes[key[0]]
        check_shard_size(path, count, shape, self.index)  # again: np.memmap's own is bare
        pairs = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, *shape))
        # zlib releases the GIL here, so the GPU loader's reader thread checks in parallel with
        # training
        if key not in self._verified and zlib.crc32(pairs) != shard[key[0] + "crc32"]:
            raise DataError(f"{path}: shard checksum (CRC32) does not match {INDEX_NAME}: the "
                            f"file is damaged or changed since packing; "
                            f"{repack_hint(self.phase_dir, self.index)}")
        return pairs

    def read_raw(self, index: int, prefix: str = "") -> np.ndarray:
        """The stored uint8 H x 2W x 3 pair (a copy out of the memory map); with ``prefix``
        "gray_", its H x 2W grayscale version (a --gray pack)."""
        if not 0 <= index < self.length:
            raise IndexError(f"pair {index} out of range for {counted(self.length, 'pair')}")
        shard = bisect.bisect_right(self.shard_starts, index) - 1
        row = index - self.shard_starts[shard]
        return np.array(self._shard(shard, prefix)[row])

    def read_batch(self, indices, out: torch.Tensor | None = None) -> torch.Tensor:
        """Stored pairs ``indices`` as one uint8 (N, H, 2W, 3) tensor (into ``out`` if given,
        e.g. pinned memory): one copy per pair out of the memory maps, nothing else."""
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
        for slot, index in enumerate(indices):
            if not 0 <= index < self.length:
                raise IndexError(f"pair {index} out of range for {counted(self.length, 'pair')}")
            shard = bisect.bisect_right(self.shard_starts, index) - 1
            target[slot] = self._shard(shard)[index - self.shard_starts[shard]]
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
