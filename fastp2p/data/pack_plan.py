"""Planning a packed dataset (``fastp2p pack``): each phase's pairs scanned and checked, cut
into shards (a plan digest each), and the refusals that need no write: a pack of another load
size or DATAROOT in OUT, a file there pack did not write, an index too large for its readers.

Apart from ``pack.py``, which writes what a plan says, because planning writes nothing: the
command plans every phase before it writes any (a refusal comes before hours of packing, not
after), and the writing side re-asks only ``refuse_other_pack`` once the folder is locked.
"""
import dataclasses
import json
import math
import os
from pathlib import Path

from fastp2p.byte_sizes import binary_size
from fastp2p.data.errors import DataError
from fastp2p.data.folders import scan_aligned, scan_two_folders
from fastp2p.data.packed_index import (INDEX_NAME, MAX_INDEX_BYTES, STATE_NAME, is_packed,
                                       not_a_regular_file, plan_digest, plan_settings, printable,
                                       read_bookkeeping, read_pack_state)
from fastp2p.data.transforms import Preprocess

CHANNELS = 3
SHARD_TARGET_BYTES = 256 << 20     # big enough to stream, small enough to redo after a crash
MIN_SHARDS = 16                    # so small datasets still spread over the workers


def pair_bytes(load_size: int) -> int:
    return load_size * 2 * load_size * CHANNELS


def auto_pairs_per_shard(count: int, load_size: int) -> int:
    """Shards of about SHARD_TARGET_BYTES, but at least MIN_SHARDS of them when there are pairs
    enough. Depends only on the data, not on --workers, so a resume with other workers keeps
    its shards."""
    by_bytes = max(1, SHARD_TARGET_BYTES // pair_bytes(load_size))
    return max(1, min(by_bytes, math.ceil(count / MIN_SHARDS)))


@dataclasses.dataclass
class PhasePlan:
    """One phase folder's pack, as planned from its scan before anything is written."""
    dataroot: Path          # absolute
    phase: str
    phase_dir: Path
    jobs: list              # a dict per shard: its file names, pairs and plan digest
    load_size: int
    per_shard: int
    dataset_mode: str
    skip_bad: bool
    gray: bool
    scan_skipped: list      # files the scan left out (pack-time failures are in the records)
    pairs: int
    overwrite: bool         # a pack of another load size or DATAROOT there may be replaced


def plan_phase(dataroot: Path, out: Path, phase: str, *, load_size: int = 286,
               dataset_mode: str = "aligned", skip_bad: bool = False,
               pairs_per_shard: int | None = None, progress: bool = True,
               overwrite: bool = False, gray: bool = False) -> PhasePlan:
    """The plan to pack ``dataroot/phase`` into ``out/phase`` (``pack_phase``): its images'
    headers read and checked, nothing written."""
    dataroot, phase_dir = Path(os.path.abspath(dataroot)), Path(out) / phase
    if load_size < 1:
        raise DataError(f"--load_size must be >= 1, got {load_size}")
    refuse_other_pack(phase_dir, dataroot, load_size, overwrite)
    scan_skipped = []
    pairs = plan_pairs(dataroot, phase, dataset_mode, load_size, skip_bad, progress,
                       scan_skipped)
    per_shard = pairs_per_shard or auto_pairs_per_shard(len(pairs), load_size)
    if per_shard < 1:
        raise DataError(f"--pairs-per-shard must be >= 1, got {per_shard}")
    refuse_index_too_large(dataroot / phase, pairs, scan_skipped,
                           shards=math.ceil(len(pairs) / per_shard))
    settings = plan_settings(load_size, dataset_mode, skip_bad, gray)
    jobs = []
    for number, start in enumerate(range(0, len(pairs), per_shard)):
        chunk = pairs[start:start + per_shard]
        jobs.append({"file": f"shard-{number:05d}.u8", "gray_file": f"gray-{number:05d}.u8",
                     "gray": gray, "pairs": chunk,
                     "plan": plan_digest(dataroot, chunk, settings),
                     "phase_dir": str(phase_dir), "dataroot": str(dataroot),
                     "aligned": dataset_mode == "aligned", "load_size": load_size,
                     "skip_bad": skip_bad})
    return PhasePlan(dataroot, phase, phase_dir, jobs, load_size, per_shard, dataset_mode,
                     skip_bad, gray, scan_skipped, len(pairs), overwrite)


def plan_pairs(dataroot: Path, phase: str, dataset_mode: str, load_size: int,
               skip_bad: bool, progress: bool = True,
               skipped: list | None = None) -> list[tuple[str, str]]:
    """The pairs of one phase (relative to dataroot), checked as the folder datasets check them
    (for any channel count: grayscale among colour images is read as RGB, as the reference
    reads it). ``skipped`` (with ``skip_bad``): gets [path relative to dataroot, why] of each
    file left out, instead of their listing on stderr."""
    # crop_size 1: packing resizes and never crops, so no image is "smaller than the crop"
    config = Preprocess(mode="resize_and_crop", load_size=load_size, crop_size=1)
    phase_dir = dataroot / phase
    problems = None if skipped is None else []
    if dataset_mode == "two_folders":
        pairs = [(str(a.relative_to(dataroot)), str(b.relative_to(dataroot)))
                 for a, b in scan_two_folders(phase_dir, config, skip_bad, progress=progress,
                                              skipped=problems)]
    else:   # A and B are one file: one string for both (memory: ~65 bytes a pair)
        pairs = [(name, name) for name in (
            str(path.relative_to(dataroot)) for path in scan_aligned(
                phase_dir, config, skip_bad, progress=progress, skipped=problems))]
    if problems:
        skipped.extend([str(Path(path).relative_to(dataroot)), why] for path, why in problems)
    return pairs


def refuse_other_pack(phase_dir: Path, dataroot: Path, load_size: int,
                      overwrite: bool) -> None:
    """DataError for an index.json there that pack did not write, or (unless ``overwrite``) a
    pack of another load size or of another DATAROOT."""
    refuse_foreign_index(phase_dir)
    if not overwrite:
        refuse_other_load_size(phase_dir, load_size)
        refuse_other_dataroot(phase_dir, dataroot)


def refuse_foreign_index(phase_dir: Path) -> None:
    """DataError if ``phase_dir`` holds an index.json that is not a pack's (another program's
    file, say, in a folder of images): packing there would replace it, which nothing asks for,
    --overwrite included (that replaces packs only). Also, before anything is written, if its
    index.json or pack-state.json is no regular file (a folder, which the final rename cannot
    replace, a FIFO, a device): pack moves nothing it did not write."""
    for name in (INDEX_NAME, STATE_NAME):
        what = not_a_regular_file(Path(phase_dir) / name)
        if what:
            raise DataError(f"{Path(phase_dir) / name}: not a regular file ({what}), where pack "
                            "writes its bookkeeping; move it out of the pack folder and run the "
                            "same command again")
    if (Path(phase_dir) / INDEX_NAME).is_file() and not is_packed(phase_dir):
        raise DataError(f"{Path(phase_dir) / INDEX_NAME}: not written by `fastp2p pack` (no "
                        f"shards beside it, no pack format in it), and packing here would "
                        f"replace it; pack into another OUT, or move that file away")


def refuse_other_load_size(phase_dir: Path, load_size: int) -> None:
    """DataError if ``phase_dir`` holds a pack of another load size: packing there would
    replace it, which only ``--overwrite`` asks for."""
    existing = packed_load_size(phase_dir)
    if existing is not None and existing != load_size:
        raise DataError(f"{phase_dir}: holds a pack made with --load_size {existing}; pass "
                        f"--load_size {existing} to resume or update it, or --overwrite to "
                        f"replace it with one of --load_size {load_size}")


def packed_load_size(phase_dir: Path) -> int | None:
    """The load size of the pack (finished or interrupted) in ``phase_dir``, or None."""
    return _recorded(phase_dir, "load_size", int)


def refuse_other_dataroot(phase_dir: Path, dataroot: Path) -> None:
    """DataError if ``phase_dir`` holds a pack of another DATAROOT (resolved paths compared):
    packing there would replace it, which only ``--overwrite`` asks for (a mistyped DATAROOT
    would otherwise replace a pack without a word)."""
    existing = packed_dataroot(phase_dir)
    if existing is not None and Path(existing).resolve() != Path(dataroot).resolve():
        given = printable(os.path.abspath(dataroot))
        raise DataError(f"{phase_dir}: holds a pack of DATAROOT {printable(existing)}, not "
                        f"{given}; pass DATAROOT {printable(existing)} to resume or update it, "
                        f"or --overwrite to replace it with a pack of {given}")


def packed_dataroot(phase_dir: Path) -> str | None:
    """The DATAROOT that the pack (finished or interrupted) in ``phase_dir`` was made from, or
    None (an older fastp2p did not record it in an interrupted pack)."""
    return _recorded(phase_dir, "dataroot", str)


def _recorded(phase_dir: Path, key: str, kind: type):
    """What the pack (finished or interrupted) in ``phase_dir`` records under ``key``, as its
    index.json or else its pack-state.json header says, if it is a ``kind``; else None."""
    for name, read in ((INDEX_NAME, read_bookkeeping), (STATE_NAME, read_pack_state)):
        try:
            value = read(Path(phase_dir) / name).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, kind) and not isinstance(value, bool) and value != "":
            return value
    return None


# The index's bytes besides the pairs' names: its fields and each shard's record (file, count,
# checksums, plan digest), with room to spare
_INDEX_BYTES_BESIDES_NAMES = 1 << 20
_SHARD_RECORD_BYTES = 400


def refuse_index_too_large(split: Path, pairs: list, scan_skipped: list, shards: int) -> None:
    """DataError, before anything is written, when the index of ``pairs`` would pass
    MAX_INDEX_BYTES, the most a pack's readers read: its pairs' names (as JSON writes them:
    a non-ASCII character as \\uXXXX, 6 bytes) and the files the scan skipped. Without it such a
    pack was written whole, then refused by every reader, and by the re-run meant to fix it."""
    size = index_bytes_bound(pairs, scan_skipped, shards)
    if size > MAX_INDEX_BYTES:
        raise DataError(f"{split}: the index of its {len(pairs):,} pairs would be about "
                        f"{binary_size(size)}, more than the "
                        f"{binary_size(MAX_INDEX_BYTES)} a pack's readers read; pack it as "
                        "several datasets (split its folder), or with shorter file names")


def index_bytes_bound(pairs: list, scan_skipped: list, shards: int) -> int:
    """The most bytes the index (or the state file) of ``pairs`` in ``shards`` takes, unless
    pairs fail while packing (--skip-bad then records each one's error, in its shard's record
    and in the index's list)."""
    # 10: the quotes, brackets and separator of ["a", "b"], and the ", " after it
    names = sum(len(a) + len(b) + 10 if _writes_as_is(a) and _writes_as_is(b)
                else len(json.dumps([a, b])) + 2 for a, b in pairs)
    return (names + len(json.dumps(scan_skipped)) + _INDEX_BYTES_BESIDES_NAMES
            + _SHARD_RECORD_BYTES * shards)


def _writes_as_is(name: str) -> bool:
    """Whether json.dumps writes ``name`` as its characters, between quotes."""
    return name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
