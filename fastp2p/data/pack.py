"""Writing packed datasets (``fastp2p pack``): decode and resize every pair once, into shards.

Each phase folder (train/val/test) of a DATAROOT becomes ``OUT/PHASE/`` with fixed-size uint8
A|B pairs (see ``packed_index.py`` for the layout), resized exactly as the reference's
``resize_and_crop`` does before its random crop (bicubic, each half to load_size x load_size), so
a packed dataset yields the same items as the folder dataset. Other ``--preprocess`` modes keep
per-image sizes or need the original pixels; they read the image folders directly.

Restartable: the sorted pair list is cut into planned shards; a worker writes a whole shard to a
temp file, fsyncs it and renames it into place, and the main process records it (with a digest
of the shard's source files, names, sizes and mtimes) in ``pack-state.json``. That file is
written anew (atomically) when a run starts writing: a header line (its format, version and
load size), then a line per shard kept; each shard finished is one more line, appended and
fsynced, so recording it costs its own record's bytes (a rewrite of the whole state per shard
was quadratic: 49 GB written for 2,000 shards of 550 pairs). A crash while a line is appended
leaves it cut short: that shard counts as not recorded, and is packed again. A re-run keeps
every recorded shard whose plan is unchanged and whose checksum verifies, and packs only the
rest (an older fastp2p's state, one JSON object, is read too); ``index.json`` appears last, so a
reader never sees half a pack. One run at a
time writes a phase folder (``folder_lock``): a second is refused at once, and so is a run that
would change a pack a training is reading (or another pack is checking); a re-run that finds the
pack up to date writes nothing, so it goes through while a training reads it.
"""
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from fastp2p.atomic_files import (naming_the_file, open_plain_file, remove_left_by_dead_processes,
                                   replace_text, replacing)
from fastp2p.byte_sizes import binary_size
from fastp2p.data.errors import DataError, counted
from fastp2p.data.folder_lock import packing_folder
from fastp2p.data.folders import open_pair
from fastp2p.data.pack_plan import (CHANNELS, PhasePlan, pair_bytes, plan_phase,
                                    refuse_other_pack)
from fastp2p.data.packed_index import (FORMAT, INDEX_NAME, STATE_NAME, VERSION, file_checksums,
                                       is_plain_file_name, is_skipped_list, printable,
                                       read_bookkeeping, read_pack_state, state_header,
                                       state_line)
from fastp2p.data.transforms import BICUBIC
from fastp2p.data.worker_pool import worker_pool, workers_starting
from fastp2p.file_reads import FileTooLarge, read_error_advice
from fastp2p.inodes import free_inodes, nearest_existing
from fastp2p.terminal import stderr_bar

GRAY_FIELDS = ("gray_file", "gray_sha256", "gray_crc32")
# The files a run writes beside its shards: pack-state.json, then index.json
BOOKKEEPING_FILES = 2


def shard_files(phase_dir: Path) -> list:
    """The shard files in a pack's phase folder: colour (shard-NNNNN.u8) and --gray ones
    (gray-NNNNN.u8), whatever plan wrote them."""
    return [*phase_dir.glob("shard-*.u8"), *phase_dir.glob("gray-*.u8")]


def load_pair(dataroot: Path, a_rel: str, b_rel: str, aligned: bool, load_size: int, *,
              gray_out: np.ndarray | None = None) -> np.ndarray:
    """One pair as stored: uint8 load_size x 2*load_size x 3, each half resized like the folder
    dataset's resize_and_crop does it (same Pillow calls, so the same pixels). ``gray_out``
    (uint8 load_size x 2*load_size), if given, gets the halves as --input_nc/--output_nc 1 see
    them: converted to grayscale first, then resized, as the reference's transform does."""
    halves = open_pair(dataroot / a_rel, dataroot / b_rel, aligned)
    pixels = np.empty((load_size, 2 * load_size, CHANNELS), dtype=np.uint8)
    for side, img in enumerate(halves):
        columns = slice(side * load_size, (side + 1) * load_size)
        pixels[:, columns] = np.asarray(img.resize((load_size, load_size), BICUBIC))
        if gray_out is not None:
            gray_out[:, columns] = np.asarray(img.convert("L").resize((load_size, load_size),
                                                                      BICUBIC))
    return pixels


@contextlib.contextmanager
def _state_writer(state_path: Path, load_size: int, dataroot: Path, kept: dict):
    """Write ``state_path`` anew, atomically: its header line and a line per record of ``kept``
    (a cut-short line an earlier run left goes with the old file). Yields a function that
    records one more finished shard: its line appended and fsynced (OSErrors name the file)."""
    with replacing(state_path) as handle:
        handle.write(state_line(state_header(load_size, str(dataroot))))
        for record in kept.values():
            handle.write(state_line(record))
    fd = open_plain_file(state_path, os.O_WRONLY | os.O_APPEND)

    def append(record: dict) -> None:
        line = memoryview(state_line(record))
        with naming_the_file(state_path):
            while line:
                line = line[os.write(fd, line):]
            os.fsync(fd)
    try:
        yield append
    finally:
        os.close(fd)


# ---- one shard, in a worker process -------------------------------------------------------

_advance = None     # called with 1 after each pair: the progress bar or a shared counter


def _count_into(counter) -> None:
    """Pool initializer: each worker adds its finished pairs to the shared ``counter``."""
    global _advance

    def advance(pairs: int) -> None:
        with counter.get_lock():
            counter.value += pairs
    _advance = advance


def write_shard(job: dict) -> dict:
    """Decode, resize and write one planned shard (and, with ``gray``, its grayscale shard)
    atomically; returns its index record."""
    phase_dir, dataroot = Path(job["phase_dir"]), Path(job["dataroot"])
    files = [job["file"]] + ([job["gray_file"]] if job["gray"] else [])
    digests, crcs = [hashlib.sha256() for _ in files], [0] * len(files)
    sources, skipped = [], []
    load_size = job["load_size"]
    with contextlib.ExitStack() as stack:
        outputs = []
        for name in files:
            outputs.append(stack.enter_context(replacing(phase_dir / name)))
        for a_rel, b_rel in job["pairs"]:
            gray = np.empty((load_size, 2 * load_size), np.uint8) if job["gray"] else None
            try:    # gray_out only in a --gray pack: the plain call stays the plain call
                pixels = load_pair(dataroot, a_rel, b_rel, job["aligned"], load_size,
                                   **({} if gray is None else {"gray_out": gray}))
            except DataError as error:
                if not job["skip_bad"]:
                    raise
                skipped.append([a_rel, str(error)])
            else:
                for number, array in enumerate([pixels, gray][:len(files)]):
                    data = array.data
                    outputs[number].write(data)
                    digests[number].update(data)
                    crcs[number] = zlib.crc32(data, crcs[number])
                sources.append([a_rel, b_rel])
            if _advance is not None:
                _advance(1)
    record = {"file": job["file"], "count": len(sources), "sha256": digests[0].hexdigest(),
              "crc32": crcs[0], "plan": job["plan"], "sources": sources, "skipped": skipped}
    if job["gray"]:
        record.update(gray_file=job["gray_file"], gray_sha256=digests[1].hexdigest(),
                      gray_crc32=crcs[1])
    return record


# ---- one phase, in the main process -------------------------------------------------------


def _recorded_shards(phase_dir: Path) -> dict:
    """Shard records of an earlier run (finished: index.json; interrupted: pack-state.json).
    Bookkeeping that cannot be read, or is not what pack writes (hand-edited, another
    program's), is left out: its shards are packed again (a state file that ``read_pack_state``
    refuses is named on stderr, with what is wrong, in one line)."""
    records = {}
    index_path, state_path = phase_dir / INDEX_NAME, phase_dir / STATE_NAME
    try:
        if index_path.is_file():
            index = read_bookkeeping(index_path)
            start = 0
            for shard in index.get("shards", []):
                count = shard["count"]
                records[shard["file"]] = dict(shard, sources=index["sources"][start:start + count])
                start += count
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return {}   # unreadable bookkeeping: pack everything again
    if state_path.is_file():
        try:
            records.update(read_pack_state(state_path)["shards"])
        except (OSError, ValueError) as error:
            print(f"fastp2p pack: {printable(state_path)}: {_unusable_state(error)}; every "
                  "shard is packed again", file=sys.stderr)
            return {}
    return {name: record for name, record in records.items() if _usable_record(name, record)}


def _unusable_state(error: Exception) -> str:
    """Why a pack-state.json that ``read_pack_state`` refused is not resumed from, without its
    path (the message names it first): an OSError is a file that cannot be read, with what its
    errno needs (``read_error_advice``); a ValueError, one that is not what pack writes."""
    if isinstance(error, FileTooLarge):
        return (f"not a state file pack wrote ({error.size:,} bytes, more than the "
                f"{binary_size(error.limit)} it reads)")
    if isinstance(error, OSError):
        advice = read_error_advice(error)
        return (f"cannot read it ({printable(error.strerror or error)}"
                + (f"; to resume from it instead, stop this run, {advice}, and run it again"
                   if advice else "") + ")")
    return f"not a state file pack wrote ({printable(error)})"


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _usable_record(name, record) -> bool:
    """Whether ``record`` is a shard record as ``write_shard`` makes it, for the shard file
    ``name`` (a plain name in the phase folder)."""
    texts = ("plan", "sha256") + (("gray_sha256",) if isinstance(record, dict)
                                  and "gray_file" in record else ())
    return (isinstance(record, dict) and is_plain_file_name(name) and record.get("file") == name
            and _is_count(record.get("count")) and _is_count(record.get("crc32", 0))
            and all(isinstance(record.get(key), str) for key in texts)
            and ("gray_file" not in record or is_plain_file_name(record["gray_file"]))
            and isinstance(record.get("sources"), list)
            and len(record["sources"]) == record["count"]
            and all(isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(part, str) for part in pair)
                    for pair in record["sources"])
            and is_skipped_list(record.get("skipped")))


def _still_good(phase_dir: Path, record: dict, plan: str, load_size: int) -> dict | None:
    """``record`` (with its CRC32s, which packs of format version 1 lack) if its shard and, in
    a --gray pack, its grayscale shard can be kept, else None."""
    if record.get("plan") != plan:
        return None
    kept = dict(record)
    files = [("", pair_bytes(load_size))]
    if "gray_file" in record:
        files.append(("gray_", pair_bytes(load_size) // CHANNELS))
    for prefix, pair_size in files:
        path = phase_dir / record[prefix + "file"]
        if not path.is_file() or path.stat().st_size != record["count"] * pair_size:
            return None
        sha256, kept[prefix + "crc32"] = file_checksums(path)
        if sha256 != record[prefix + "sha256"]:
            return None
    return kept


def write_phase(plan: PhasePlan, *, workers: int = 1, progress: bool = True,
                later: list = ()) -> dict:
    """Pack ``plan``'s phase (``pack_phase``); ``later``: the PhasePlans this run packs after it,
    whose shards the free-space check counts too. Returns the index."""
    plan.phase_dir.mkdir(parents=True, exist_ok=True)
    with packing_folder(plan.phase_dir) as lock_for_writing:
        # again, locked: another pack may have written there since the plan (the phases
        # before this one took their time)
        refuse_other_pack(plan.phase_dir, plan.dataroot, plan.load_size, plan.overwrite)
        return _pack_into(plan, workers, progress, later, lock_for_writing)


def pack_phase(dataroot: Path, out: Path, phase: str, *, load_size: int = 286,
               dataset_mode: str = "aligned", workers: int = 1, skip_bad: bool = False,
               pairs_per_shard: int | None = None, progress: bool = True,
               overwrite: bool = False, gray: bool = False) -> dict:
    """Pack ``dataroot/phase`` into ``out/phase``; resumes an interrupted run. Returns the index.
    A pack of another load size or DATAROOT there is replaced only if ``overwrite``. ``gray``:
    also store each pair as --input_nc/--output_nc 1 see it (``gray-NNNNN.u8``: grayscale, then
    resized)."""
    plan = plan_phase(dataroot, out, phase, load_size=load_size, dataset_mode=dataset_mode,
                      skip_bad=skip_bad, pairs_per_shard=pairs_per_shard, progress=progress,
                      overwrite=overwrite, gray=gray)
    return write_phase(plan, workers=workers, progress=progress)


def _pack_into(plan: PhasePlan, workers: int, progress: bool, later: list,
               lock_for_writing) -> dict:
    """``write_phase``'s writing, with the folder locked (shared: ``lock_for_writing()`` takes
    it exclusively before the first write): keep the shards still good, pack the rest, write
    the index; nothing at all when the pack there is up to date."""
    phase_dir, jobs, gray = plan.phase_dir, plan.jobs, plan.gray
    # temp files of a run that was killed (one still running holds its live pid's names),
    # older fastp2p versions' NAME.tmp-PID among them
    remove_left_by_dead_processes(phase_dir, "*.tmp-*")
    done = _kept_shards(phase_dir, plan.phase, jobs, plan.load_size, progress)
    todo = [job for job in jobs if job["file"] not in done]
    planned = {job[key] for job in jobs for key in _shard_keys(gray)}
    # shards of an earlier, longer plan, or grayscale shards of one with --gray
    stale = [shard for shard in shard_files(phase_dir) if shard.name not in planned]
    state_path = phase_dir / STATE_NAME
    if not todo and not stale and not state_path.exists():
        unchanged = _index_if_unchanged(phase_dir, _index(plan, [done[job["file"]]
                                                                 for job in jobs]))
        if unchanged is not None:   # readers may go on reading it
            return unchanged
    lock_for_writing()
    _refuse_non_files(phase_dir, todo)
    refuse_too_little_space(plan, todo, later)
    if todo:
        # from here on the folder is being rewritten: only the state file describes it
        with _state_writer(state_path, plan.load_size, plan.dataroot, done) as record_shard:
            (phase_dir / INDEX_NAME).unlink(missing_ok=True)
            kept = sum(len(job["pairs"]) for job in jobs if job["file"] in done)
            bar = _progress_bar(progress, plan.pairs, kept, f"pack {plan.phase}")
            # closing: the pool is ended before the folder's lock is released, also when an
            # error or a Ctrl-C comes between two records (outside the generator that holds
            # the pool)
            try:
                with contextlib.closing(_run_jobs(todo, workers, bar)) as records:
                    for record in records:
                        done[record["file"]] = record
                        record_shard(record)
            finally:
                if bar is not None:
                    bar.close()
    for shard in stale:
        shard.unlink()
    index = _index(plan, [done[job["file"]] for job in jobs])
    replace_text(phase_dir / INDEX_NAME, json.dumps(index))
    state_path.unlink(missing_ok=True)
    return index


def _index_if_unchanged(phase_dir: Path, index: dict) -> dict | None:
    """``index`` if ``phase_dir``'s index.json says the same (as JSON reads it back), else
    None."""
    try:
        written = read_bookkeeping(phase_dir / INDEX_NAME)
    except (OSError, ValueError):
        return None
    return index if written == json.loads(json.dumps(index)) else None


def _kept_shards(phase_dir: Path, phase: str, jobs: list, load_size: int,
                 progress: bool) -> dict:
    """The records, by shard file, of the shards of ``jobs`` that an earlier run finished and
    that are still good. Each is read whole for its checksums, minutes on a large pack: a bar
    (``progress``) shows it, as --verify's does."""
    earlier = _recorded_shards(phase_dir)
    recorded = [job for job in jobs if job["file"] in earlier]
    if progress and recorded:
        recorded = stderr_bar(recorded, desc=f"check {phase}", unit="shard")
    kept = {}
    for job in recorded:
        record = _still_good(phase_dir, earlier[job["file"]], job["plan"], load_size)
        if record is not None:
            kept[job["file"]] = record
    return kept


def _refuse_non_files(phase_dir: Path, jobs: list) -> None:
    """DataError naming a folder (or anything but a file) where a job is to write a shard: the
    write's final rename cannot replace it, and pack deletes no folder it did not make."""
    for job in jobs:
        for name in (job["file"], job["gray_file"])[:1 + job["gray"]]:
            path = phase_dir / name
            if path.exists() and not path.is_file():
                raise DataError(f"{path}: not a file, where pack writes a shard; move it out of "
                                "the pack folder and run the same command again")


def refuse_too_little_space(plan: PhasePlan, todo: list, later: list = ()) -> None:
    """DataError before the first write if the shards still to write cannot fit on the disk:
    otherwise the disk fills partway (a re-run resumes, but after that much time lost). Counted:
    ``plan``'s jobs ``todo``, and the jobs of the phases this run packs after it (``later``) on
    the same disk that lack a shard file (their kept shards are not known before their turn).
    Both are lower bounds, so a pack that fits is not refused: the bytes of every planned pair
    (fewer where --skip-bad drops one while packing), less the shards each replaces; and the
    inodes of the shard files not there yet (``_refuse_too_few_inodes``)."""
    device, free = disk_of(plan.phase_dir)
    phases = [(plan, todo)] + [(other, _without_shard_files(other)) for other in later
                               if disk_of(other.phase_dir)[0] == device]
    _refuse_too_few_bytes(plan, phases, free)
    _refuse_too_few_inodes(plan.phase_dir, phases)


def _refuse_too_few_bytes(plan: PhasePlan, phases: list, free: int) -> None:
    """DataError where the shards of ``phases`` ((PhasePlan, jobs) on the disk of ``plan``'s
    folder) need more than the ``free`` bytes of that disk."""
    counts, needed = [], 0
    for phase, jobs in phases:
        colour = pair_bytes(phase.load_size)
        per_pair = colour + (colour // CHANNELS if phase.gray else 0)  # --gray: one more channel
        count = sum(len(job["pairs"]) for job in jobs)
        counts.append((phase.phase, count))
        needed += count * per_pair
        for job in jobs:
            for key in _shard_keys(phase.gray):
                with contextlib.suppress(OSError):     # none there yet
                    needed -= (phase.phase_dir / job[key]).stat().st_size
    if needed > free:
        total = sum(count for _, count in counts)
        counts = [(name, count) for name, count in counts if count]
        where = "" if [name for name, _ in counts] == [plan.phase] else " ({})".format(
            ", ".join(f"{count} in {name}" for name, count in counts))
        raise DataError(f"{plan.phase_dir}: the {counted(total, 'pair')} still to pack{where} "
                        f"need at least {binary_size(needed)} on this disk, which has "
                        f"{binary_size(free)} free; make room, or pack to a folder on another "
                        "disk")


def _refuse_too_few_inodes(phase_dir: Path, phases: list) -> None:
    """DataError where the file system of ``phase_dir`` has fewer free inodes (the files it can
    hold) than the shard files of ``phases`` ((PhasePlan, jobs) on it) that are not there yet,
    plus the state file and the index that a run writing them writes: on an inode limit (HPC
    scratch, tmpfs) the pack failed partway with "No space left on device", bytes to spare."""
    new_files = sum(not os.path.lexists(phase.phase_dir / job[key])
                    for phase, jobs in phases for job in jobs for key in _shard_keys(phase.gray))
    free = free_inodes(phase_dir)
    if not new_files or free is None:
        return
    needed = new_files + BOOKKEEPING_FILES
    if needed > free:
        raise DataError(f"{phase_dir}: the {counted(new_files, 'shard file')} still to write "
                        f"and the pack's index and state need {needed} inodes (files) on this "
                        f"file system, which has {free} free (`df -i`); delete files there or "
                        "raise its inode limit, or pack to a folder on another disk")


def _without_shard_files(plan: PhasePlan) -> list:
    """``plan``'s jobs that lack a shard file (or, with --gray, its grayscale one)."""
    return [job for job in plan.jobs if not all(os.path.lexists(plan.phase_dir / job[key])
                                                for key in _shard_keys(plan.gray))]


def _shard_keys(gray: bool) -> tuple:
    """The keys of a job's shard file names: its colour shard's, and with --gray its
    grayscale shard's."""
    return ("file", "gray_file")[:1 + gray]


def disk_of(path) -> tuple[int, int]:
    """(device, free bytes) of the file system ``path`` is or would be made on: that of its
    nearest existing folder."""
    path = nearest_existing(path)
    return os.stat(path).st_dev, shutil.disk_usage(path).free


def _progress_bar(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return None
    return stderr_bar(total=total, initial=initial, desc=desc, unit="pair", smoothing=0.1)


def _run_jobs(jobs: list, workers: int, bar):
    """Yield each job's record as it finishes, on ``workers`` processes (0 or 1: in process)."""
    global _advance
    if workers <= 1 or len(jobs) == 1:
        _advance = bar.update if bar is not None else None
        try:
            for job in jobs:
                yield write_shard(job)
        finally:
            _advance = None
        return
    processes = min(workers, len(jobs))
    with workers_starting(processes):   # the counter's lock and memory: in /dev/shm, as theirs
        counter = multiprocessing.Value("q", 0)
    with worker_pool(processes, _count_into, (counter,)) as pool:
        pending = [pool.submit(write_shard, job) for job in jobs]
        reported = 0
        while pending:
            time.sleep(0.1)
            if bar is not None:
                reported = _show_counted(bar, counter, reported)
            still = []
            for shard in pending:
                if shard.done():
                    # a worker's DataError raised here; a worker's death, BrokenProcessPool,
                    # which worker_pool's block turns into its line
                    yield shard.result()
                else:
                    still.append(shard)
            pending = still
        if bar is not None:
            _show_counted(bar, counter, reported)


def _show_counted(bar, counter, reported: int) -> int:
    """Add to ``bar`` the pairs ``counter`` counts beyond ``reported``; that count. The counter
    is read once: workers add to it meanwhile, and what they added between two reads was lost
    (the bar ended at 98%)."""
    counted = counter.value
    if counted != reported:
        bar.update(counted - reported)
    return counted


def _index(plan: PhasePlan, records: list) -> dict:
    sources = [pair for record in records for pair in record["sources"]]
    skipped = plan.scan_skipped + [item for record in records for item in record["skipped"]]
    if not sources:
        raise DataError(f"{plan.dataroot / plan.phase}: every pair was bad and skipped; nothing "
                        "was packed")
    size = plan.load_size
    index = {
        "format": FORMAT, "version": VERSION, "preprocess": "resize_and_crop",
        "load_size": size, "height": size, "width": size, "channels": CHANNELS,
        "count": len(sources), "pairs_per_shard": plan.per_shard,
        "dataset_mode": plan.dataset_mode, "skip_bad": plan.skip_bad, "gray": plan.gray,
        "dataroot": str(plan.dataroot), "phase": plan.phase,
        # a shard whose pairs were all skipped stays listed (0 pairs), so a resume keeps it
        "shards": [{key: record[key] for key in ("file", "count", "sha256", "crc32", "plan",
                                                 "skipped", *GRAY_FIELDS[:3 * plan.gray])}
                   for record in records],
        "sources": sources, "skipped": skipped,
    }
    return index
