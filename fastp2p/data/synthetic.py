"""Synthetic aligned pairs at any scale, made without a download (``fastp2p pack --synthetic``).

Each pair is an edges -> picture pair like the pix2pix edges2* datasets: B is a 256x256
"photo" of a few filled shapes (ellipses, rectangles, polygons) with shaded colours over a
smooth background and a little grain, A is the shapes' outlines (dark lines on white). The
content is structured (a network can learn the mapping; JPEG sizes and decode times resemble
real datasets'), and pair ``i`` depends only on (seed, i), so a folder is the same on every
machine and a partly written one is finished by writing the missing files (and removing the
temporary files of the pairs a stopped run was writing).

Files are ``DATAROOT/PHASE/NNNNNNN.jpg`` (A|B side by side, 512x256), written atomically, one
at a time, on ``workers`` processes: memory stays flat in the number of pairs. Which set they
belong to (seed, size, JPEG quality) and how many pairs fastp2p may have written are recorded in
``DATAROOT/.fastp2p-synthetic-PHASE.json`` (outside the image folder, which then holds pairs
only), before any pair is written: a run for another set removes those pairs and writes every
pair again instead of keeping files of the wrong set. Files the record does not cover are never
removed: pair-named files without a readable record (a user's frames named 0000000.jpg...) or
past its count are refused (an older fastp2p's record has no count: it covers the pairs numbered
from 0 without a gap), and so, before another set replaces them, are files that do not carry
PAIR_COMMENT (a record says nothing of files put in place of the pairs it counts).
"""
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fastp2p.atomic_files import remove_left_by_dead_processes, replace_text, replacing
from fastp2p.data.errors import DataError, counted
from fastp2p.data.worker_pool import results_in_order, worker_pool
from fastp2p.json_files import read_json
from fastp2p.terminal import stderr_bar

SIZE = 256          # each half, as the pix2pix datasets' 256x256 images
QUALITY = 90        # JPEG quality, as the pix2pix datasets' files
FILE_DIGITS = 7     # names sort in index order up to 10 million pairs
# The most pairs a set holds: pair 10**FILE_DIGITS would get a longer name, which sorts out of
# index order and which a re-run takes for a file that is not a pair (and refuses).
MAX_PAIRS = 10 ** FILE_DIGITS
# Fewer bytes than any pair's JPEG file takes (those of seeds 0..2 are 12-25 kB): the disk space
# a set needs is checked against free space with it, so that check never refuses a set that fits.
MIN_PAIR_FILE_BYTES = 8 << 10
# The JPEG comment each pair file carries: only files with it are removed for another set. The
# record counts pairs, not files: a user's frames put in place of removed pairs (or under a
# record copied in) were deleted.
PAIR_COMMENT = b"fastp2p synthetic pair"
# The most of a set's record that is read (a larger one is read as no record): fastp2p writes
# four numbers; a huge file was read whole, until memory ran out.
MAX_RECORD_BYTES = 1 << 16


def pair_name(index: int) -> str:
    return f"{index:0{FILE_DIGITS}d}.jpg"


def _is_pair_file(name: str, count: int) -> bool:
    stem, dot, suffix = name.partition(".")
    return (dot == "." and suffix == "jpg" and len(stem) == FILE_DIGITS and stem.isdigit()
            and int(stem) < count)


def pairs_present(folder: Path, count: int) -> int:
    """How many of pairs 0 .. count-1 have a file in ``folder`` (0 if it does not exist)."""
    if not folder.is_dir():
        return 0
    with os.scandir(folder) as entries:
        return sum(_is_pair_file(entry.name, count) for entry in entries)


def _background(rng, size: int) -> np.ndarray:
    """A smooth colour field: two random colours blended along a random direction, plus a
    coarse bicubic-upsampled variation."""
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * np.arange(size)[None, :] + np.sin(angle) * np.arange(size)[:, None])
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    field = start + ramp[..., None] * (end - start)
    coarse = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)
    variation = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    return 0.75 * field + 0.25 * variation


def _shape_outline(rng, size: int) -> tuple[str, list]:
    kind = ("ellipse", "rectangle", "polygon")[rng.integers(3)]
    if kind == "polygon":
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        radius = rng.uniform(0.08, 0.3) * size
        corners = rng.integers(3, 8)
        angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
        radii = radius * rng.uniform(0.6, 1.0, corners)
        return kind, [(float(cx + r * math.cos(a)), float(cy + r * math.sin(a)))
                      for a, r in zip(angles, radii)]
    x0, y0 = rng.uniform(0.0, 0.75, 2) * size
    width, height = rng.uniform(0.12, 0.45, 2) * size
    return kind, [float(x0), float(y0), float(min(x0 + width, size - 1)),
                  float(min(y0 + height, size - 1))]


def synthetic_pair(seed: int, index: int, size: int = SIZE) -> np.ndarray:
    """Pair ``index`` of the synthetic set ``seed``: uint8 size x 2*size x 3, A (edges) | B."""
    rng = np.random.default_rng([seed, index])
    labels = Image.new("L", (size, size), 0)
    label_draw = ImageDraw.Draw(labels)
    shapes = []
    for label in range(1, rng.integers(3, 9) + 1):
        kind, outline = _shape_outline(rng, size)
        getattr(label_draw, kind)(outline, fill=label)
        shapes.append(rng.uniform(0, 255, 3))
    label_map = np.asarray(labels)
    photo = _background(rng, size)
    # each shape's colour, shaded from light (top left) to dark (bottom right)
    shade = 0.75 + 0.5 * (1 - (np.arange(size)[None, :] + np.arange(size)[:, None]) / (2 * size))
    for label, colour in enumerate(shapes, start=1):
        inside = label_map == label
        photo[inside] = colour * shade[inside][:, None]
    photo += rng.normal(0, 3, photo.shape)
    b_half = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    b_half = b_half.filter(ImageFilter.GaussianBlur(0.6))     # soften the jagged shape borders
    # an edge wherever the shape label changes between neighbours, drawn 2 pixels wide
    edges = np.zeros((size, size), dtype=bool)
    edges[:, 1:] |= label_map[:, 1:] != label_map[:, :-1]
    edges[1:, :] |= label_map[1:, :] != label_map[:-1, :]
    edges[:, :-1] |= edges[:, 1:]
    edges[:-1, :] |= edges[1:, :]
    pair = np.empty((size, 2 * size, 3), dtype=np.uint8)
    pair[:, :size] = np.where(edges, 0, 255)[..., None].astype(np.uint8)
    pair[:, size:] = np.asarray(b_half)
    return pair


def _record_path(dataroot: Path, phase: str) -> Path:
    return dataroot / f".fastp2p-synthetic-{phase}.json"


def holds_synthetic_pairs(dataroot: Path, phase: str = "train") -> bool:
    """Whether ``--synthetic`` wrote pairs into ``dataroot/phase`` (its record is there)."""
    return _record_path(Path(dataroot), phase).is_file()


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _recorded_set(record: Path, folder: Path):
    """The set and pair count a record says fastp2p wrote, or None (no record, or unreadable).

    A record of an older fastp2p has no pair count; it is trusted for the pairs numbered from 0
    without a gap (that fastp2p refused folders holding other files and wrote its record only
    for its own pairs), so pairs past a gap are still refused."""
    try:
        recorded = read_json(record, max_bytes=MAX_RECORD_BYTES)
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not all(_is_count(recorded.get(key))
                                                 for key in ("seed", "size", "quality")):
        return None
    if "pairs" not in recorded:
        contiguous = 0
        while (folder / pair_name(contiguous)).is_file():
            contiguous += 1
        recorded = dict(recorded, pairs=contiguous)
    return recorded if _is_count(recorded["pairs"]) else None


def _pair_index(path: Path) -> int:
    return int(path.name.partition(".")[0])


def _carries_pair_comment(path: Path) -> bool:
    """Whether ``path`` is a JPEG with PAIR_COMMENT (its header alone is read)."""
    try:
        with Image.open(path) as image:
            return image.format == "JPEG" and image.info.get("comment") == PAIR_COMMENT
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def _refuse_unknown_pairs(folder: Path, names: list, why: str) -> None:
    """DataError naming ``names``, pair-named files of ``folder`` that fastp2p must not remove
    (``why``), if there are any."""
    if names:
        raise DataError(f"{folder}: holds {counted(len(names), 'file')} named like synthetic "
                        f"pairs (e.g. {names[0]}) {why}; write into an empty DATAROOT")


def _unusable_record(record: Path) -> str:
    """Why the record at ``record`` gives no set (``_recorded_set``), as _refuse_unknown_pairs
    goes on: larger than any fastp2p writes (left unread for its size: not "unreadable"),
    or unreadable."""
    try:
        size = record.stat().st_size
    except OSError:
        size = 0
    if size > MAX_RECORD_BYTES:
        return (f"and its {record.name} is too large ({size} bytes, more than the "
                f"{MAX_RECORD_BYTES} bytes read of a record: no record fastp2p writes is that "
                "large), so it is no record of them")
    return f"and its {record.name} is unreadable"


def _start_set(folder: Path, record: Path, wanted: dict, count: int) -> None:
    """Make ``folder``'s pairs those of ``wanted``: keep them if the record says they are,
    else remove them, and record ``wanted`` (with how many pairs it may hold) before any new
    pair is written. Only pairs the record says fastp2p wrote are ever removed: a pair-named
    file it does not cover (a user's 0000000.jpg, or a folder without a readable record) is
    refused before anything is removed."""
    recorded = _recorded_set(record, folder)
    written = recorded["pairs"] if recorded is not None else 0
    pairs = sorted(path for path in folder.iterdir() if _is_pair_file(path.name, math.inf))
    why = ("that its record does not say fastp2p wrote" if recorded is not None else
           _unusable_record(record)
           if record.exists() else f"and no {record.name} says fastp2p wrote them")
    _refuse_unknown_pairs(folder, [path.name for path in pairs if _pair_index(path) >= written],
                          why)
    same_set = recorded is not None and all(recorded[key] == wanted[key] for key in wanted)
    if pairs and not same_set:
        _refuse_unknown_pairs(folder, [path.name for path in pairs
                                       if not _carries_pair_comment(path)],
                              "without the JPEG comment of fastp2p's synthetic pairs (not "
                              "fastp2p's, or an older fastp2p's, written before that comment: "
                              "remove them yourself)")
        print(f"fastp2p: {folder}: holds {counted(len(pairs), 'synthetic pair')} of seed "
              f"{recorded['seed']}, not of seed {wanted['seed']}: writing the set again",
              file=sys.stderr)
        # the old record stays until they are gone: an interrupted run removes the rest next time
        for path in pairs:
            path.unlink()
    replace_text(record, json.dumps(dict(wanted, pairs=max(count, written if same_set else 0))))


def _refuse_extra_files(folder: Path, pairs_up_to, count: int) -> None:
    """DataError if ``folder`` holds files other than pairs 0 .. pairs_up_to-1."""
    extra = sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")
                   and not _is_pair_file(path.name, pairs_up_to))
    if not extra:
        return
    if pairs_up_to == math.inf:  # not named like pairs: images of the user's own, say
        raise DataError(f"{folder}: holds {counted(len(extra), 'file')} other than synthetic "
                        f"pairs (e.g. {extra[0]}); --synthetic writes into an empty DATAROOT "
                        "or one it wrote before (to pack a dataset of your own, leave "
                        "--synthetic out)")
    raise DataError(f"{folder}: holds {counted(len(extra), 'synthetic pair')} past pair "
                    f"{count - 1} (e.g. {extra[0]}) from an earlier, larger --synthetic; pass "
                    "its N again, or write into an empty DATAROOT")


def _write_range(job: tuple) -> int:
    """Write pairs [start, stop) of set ``seed`` that are not there yet; returns how many."""
    folder, seed, start, stop = job
    written = 0
    for index in range(start, stop):
        path = Path(folder) / pair_name(index)
        if path.is_file():      # written by an earlier, interrupted run: same bytes
            continue
        # not fsynced one by one: a torn file after a power loss is found by `fastp2p pack`
        with replacing(path, durable=False) as file:
            Image.fromarray(synthetic_pair(seed, index)).save(file, format="JPEG",
                                                              quality=QUALITY,
                                                              comment=PAIR_COMMENT)
        written += 1
    return written


def count_problem(count: int) -> str | None:
    """Why ``count`` pairs cannot be a synthetic set (--synthetic N), or None."""
    if 1 <= count <= MAX_PAIRS:
        return None
    return (f"--synthetic must be >= 1 and <= {MAX_PAIRS} pairs (pair files are numbered with "
            f"{FILE_DIGITS} digits), got {count}")


def write_synthetic(dataroot, count: int, *, seed: int = 0, phase: str = "train",
                    workers: int = 1, progress: bool = True) -> Path:
    """Write pairs 0 .. count-1 of set ``seed`` into ``dataroot/phase`` (missing ones only, when
    the folder's recorded set is ``seed``'s; all of them otherwise); returns that folder.
    Deterministic: the same (seed, count) gives the same files."""
    problem = count_problem(count)
    if problem:
        raise DataError(problem)
    dataroot = Path(dataroot)
    folder = dataroot / phase
    folder.mkdir(parents=True, exist_ok=True)
    # the temp files of workers a Ctrl-C or a kill ended mid-pair (0-byte or torn JPEGs that
    # packing or training would take for images); a live run's are left alone
    remove_left_by_dead_processes(folder)
    # packing the folder would take other files in too: refuse them before anything is removed
    _refuse_extra_files(folder, math.inf, count)
    # a run of another set replaces every pair
    _start_set(folder, _record_path(dataroot, phase),
               {"seed": seed, "size": SIZE, "quality": QUALITY}, count)
    _refuse_extra_files(folder, count, count)
    chunk = 64      # small enough for a live progress bar, large enough to amortize the Pool
    # a range and a generator: nothing is held per pair, nor per chunk, however large count is
    starts = range(0, count, chunk)
    jobs = ((str(folder), seed, start, min(start + chunk, count)) for start in starts)
    bar = None
    if progress:
        bar = stderr_bar(total=count, desc=f"synthetic {phase}", unit="pair", smoothing=0.1)
    try:
        if workers <= 1 or len(starts) == 1:
            for job in jobs:
                _write_range(job)
                if bar is not None:
                    bar.update(job[3] - job[2])
        else:
            # results_in_order draws jobs a few per worker ahead of the pairs written
            with worker_pool(min(workers, len(starts))) as pool:
                results = results_in_order(pool, _write_range, jobs)
                for start, _ in zip(starts, results):
                    if bar is not None:
                        bar.update(min(chunk, count - start))
    finally:
        if bar is not None:
            bar.close()
    return folder
