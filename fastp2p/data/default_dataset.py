"""The embedded default dataset: pairs cut from scikit-image's bundled colour photographs.

Only photographs that ship inside scikit-image's wheel are used (read straight from the
package's data folder, never through ``skimage.data``'s fetchers, which may download), so the
build needs no network. Two tasks: ``gray2color`` (A is the photo in grayscale, B the photo: the
paper's colourisation task, the default) and ``edges2photo`` (A is the Canny edge map, black
lines on white as in edges2shoes). Pairs are 128x128 crops.

Every photograph is in every split, at different places: each is scaled to 4 crops wide and its
right quarter (one crop wide) is held out, the upper half of that band giving the val crops and
the lower half the test crops; train crops are cut from the left three quarters only (at that
scale and at 6 crops wide), so no train crop overlaps a val or test crop. Test pairs thus come
from all eight photographs, from regions training never sees. The result is written once,
atomically, into the cache folder in the aligned format, so every other code path sees an
ordinary dataset; training packs its train split once beside it (``packed_default_dataroot``).
"""
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from fastp2p import cpu_info
from fastp2p.atomic_files import process_alive
from fastp2p.cache_folder import NoCacheFolder, cache_root
from fastp2p.data.errors import DataError
from fastp2p.data.options import DEFAULT_TASK, TASKS

RECIPE_VERSION = 2
CROP = 128
TRAIN_STRIDE = CROP // 2
# Widths the photographs are scaled to, in crops; the held-out band is the right quarter of the
# first (HELD_OUT_WIDTH - 1 crops of train area, then one crop of val/test band).
HELD_OUT_WIDTH = 4
TRAIN_WIDTHS = (4, 6)
CANNY_SIGMA = 2.0
SPLITS = ("train", "val", "test")
# The colour photographs (not charts or synthetic images) bundled in scikit-image's wheel.
# The file a finished build leaves in its folder: a folder without it is no whole build.
BUILT_MARKER = ".fastp2p-built"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
          "motorcycle_left.png", "retina.jpg", "rocket.jpg")


def _bundled_photo(name: str) -> Path:
    try:
        import skimage
    except ImportError:
        raise DataError("the default dataset is cut from scikit-image's sample photographs, but "
                        "scikit-image is not installed; pip install 'fastp2p[data]' or pass "
                        "--dataroot") from None
    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        raise DataError(f"{path}: scikit-image's bundled sample photograph is missing; reinstall "
                        "scikit-image or pass --dataroot")
    return path


def _grid(first: int, last: int, stride: int) -> list[int]:
    """Crop starts from ``first`` to ``last`` (inclusive) every ``stride``, ``last`` included;
    empty when the range holds no crop."""
    if last < first:
        return []
    starts = list(range(first, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def _condition(photo: np.ndarray, task: str) -> np.ndarray:
    """The A image of the pair for the whole scaled photo (uint8 HxWx3)."""
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    if task == "gray2color":
        return np.repeat(gray[:, :, None], 3, axis=2)
    from skimage.feature import canny
    edges = canny(gray.astype(np.float32) / 255.0, sigma=CANNY_SIGMA)
    return np.repeat(np.where(edges, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _crop_windows(width: int, height: int, scale: int) -> dict:
    """{split: [(y, x), ...]} of the crops taken from a photo scaled to ``width`` x ``height``
    (``scale`` crops wide). The held-out band starts where the first HELD_OUT_WIDTH - 1 crops of
    the HELD_OUT_WIDTH-wide scale end, at the same place of the photo at every scale."""
    band = width * (HELD_OUT_WIDTH - 1) // HELD_OUT_WIDTH
    windows = {"train": [(y, x) for y in _grid(0, height - CROP, TRAIN_STRIDE)
                         for x in _grid(0, band - CROP, TRAIN_STRIDE)]}
    if scale == HELD_OUT_WIDTH:
        middle = height // 2
        windows["val"] = [(y, band) for y in _grid(0, middle - CROP, CROP)]
        windows["test"] = [(y, band) for y in _grid(middle, height - CROP, CROP)]
    return windows


def _write_pairs(source: Path, task: str, out_dir: Path) -> dict:
    with Image.open(source) as img:
        photo = img.convert("RGB")
    counts = dict.fromkeys(SPLITS, 0)
    for scale in TRAIN_WIDTHS:
        width = scale * CROP
        height = max(CROP, round(photo.size[1] * width / photo.size[0]))
        scaled = np.asarray(photo.resize((width, height), Image.Resampling.BICUBIC))
        condition = _condition(scaled, task)
        for split, windows in _crop_windows(width, height, scale).items():
            for y, x in windows:
                window = (slice(y, y + CROP), slice(x, x + CROP))
                pair = np.concatenate([condition[window], scaled[window]], axis=1)
                name = f"{source.stem}_w{width}_y{y}_x{x}.jpg"
                Image.fromarray(pair).save(out_dir / split / name, quality=95)
                counts[split] += 1
    return counts


def _fingerprint(task: str) -> str:
    digest = hashlib.sha256(f"{task}/v{RECIPE_VERSION}".encode())
    for name in PHOTOS:
        digest.update(_bundled_photo(name).read_bytes())
    return digest.hexdigest()[:12]


def build_default_dataset(out_dir: Path, task: str) -> dict:
    """Write the aligned train/val/test folders into ``out_dir``; returns pair counts."""
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True)
    counts = dict.fromkeys(SPLITS, 0)
    for name in PHOTOS:
        for split, count in _write_pairs(_bundled_photo(name), task, out_dir).items():
            counts[split] += count
    return counts


def default_dataroot(task: str = DEFAULT_TASK) -> Path:
    """Path of the embedded default dataset (aligned format), building it on first use.

    ``task``: "gray2color" (grayscale -> colour photo, the default) or "edges2photo" (Canny
    edges -> photo).
    """
    if task not in TASKS:
        raise DataError(f"default dataset task {task!r} is not one of {', '.join(TASKS)}")
    try:
        root = cache_root()
    except NoCacheFolder as error:
        raise DataError(f"{error}, or pass --dataroot") from None
    return _built_once(root / f"default-{task}-{_fingerprint(task)}",
                       lambda folder: build_default_dataset(folder, task), "the default dataset")


def packed_default_dataroot(root: Path, phase: str, load_size: int) -> Path:
    """A dataset folder holding the embedded dataset ``root``'s ``phase`` packed at
    ``load_size`` (``fastp2p pack``'s format: the same pairs, already decoded and resized),
    built once beside ``root`` in the cache. Training reads it instead of decoding and resizing
    every JPEG again each epoch (benchmarks/NOTES.md, "The first run on the 2-core AMD
    EPYC")."""
    from fastp2p.data.pack import pack_phase
    from fastp2p.data.packed_index import VERSION

    def pack(folder: Path) -> None:
        pack_phase(root, folder, phase, load_size=load_size, workers=cpu_info.usable_cpus(),
                   progress=False)
    # the pack format's version in the name: a later fastp2p that reads another format builds
    # its own pack instead of finding one it refuses
    return _built_once(root.with_name(f"{root.name}-{phase}-packed{load_size}-v{VERSION}"),
                       pack, f"the default dataset's {phase} pack")


def _built_once(final: Path, build, what: str) -> Path:
    """``final``, a folder of the cache, made by ``build(folder)`` on first use: built in a
    temporary folder beside it (with the umask's mode), marked complete (``BUILT_MARKER``) and
    renamed into place, so a reader sees no folder or a whole one, and a failed build leaves
    nothing behind; ``what`` names it in errors. A folder there without the mark (emptied or
    made by hand, or an older fastp2p's) is moved away and built again: an empty one was taken
    for the dataset and reported as a --dataroot with no train folder, though no --dataroot
    was passed."""
    if _is_built(final, what):
        return final
    prefix = f".building-{final.name}-"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_builds(final.parent, prefix)
        _remove_unmarked(final, prefix)
        # made with the umask's mode, as the rest of the cache (tempfile.mkdtemp's folders are
        # 0700 whatever the umask: a build in a shared cache was unreadable to its other users)
        building = final.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(6)}"
        building.mkdir(mode=0o777)
    except OSError as error:
        raise DataError(f"{final.parent}: cannot create the cache folder for {what} ({error}); "
                        "set FASTP2P_CACHE to a writable folder or pass --dataroot") from None
    try:
        build(building)
        (building / BUILT_MARKER).touch()
        try:
            os.rename(building, final)    # atomic: a reader sees no folder or a whole one
        except OSError:
            if not final.is_dir():        # not another process finishing first: a real failure
                raise
    except OSError as error:
        raise DataError(f"{final}: building {what} failed ({error}); nothing was left behind: "
                        "free some space or set FASTP2P_CACHE to another folder, and run "
                        "again") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final


def _is_built(final: Path, what: str) -> bool:
    """Whether ``final`` holds a whole build (its ``BUILT_MARKER``). Raises DataError where
    this user may not look into it: another user's build in a shared cache, made 0700 (by a
    fastp2p before the builds followed the umask, or under a umask of 077), which this user
    can neither read nor move away to build again."""
    try:
        return stat.S_ISREG(os.stat(final / BUILT_MARKER).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError as error:
        raise DataError(f"{final}: {error.strerror}: {what} there is not readable to you "
                        f"(another user's build); ask its owner to run chmod -R a+rX {final}, "
                        "or set FASTP2P_CACHE to a folder of your own or pass --dataroot"
                        ) from None


def _remove_unmarked(final: Path, prefix: str) -> None:
    """Remove ``final`` (no complete build: ``_built_once``), renamed first to a build folder
    of this process, so that no reader finds it half removed, another process removing it too
    finds nothing, and what a kill leaves is a dead build's (``_remove_dead_builds``)."""
    if not (final.exists() or final.is_symlink()):
        return
    aside = final.with_name(f"{prefix}{os.getpid()}-unmarked")
    try:
        os.rename(final, aside)
    except FileNotFoundError:  # none there, or another process moved it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def _remove_dead_builds(folder: Path, prefix: str) -> None:
    """Remove the ``prefix``PID-* build folders whose process no longer runs: a killed build's
    (a live one's may be renamed into place any moment)."""
    for leftover in folder.glob(f"{prefix}*"):
        pid = leftover.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
