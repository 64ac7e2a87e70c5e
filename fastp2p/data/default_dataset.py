"""The embedded default dataset: edges->photo pairs cut from scikit-image's bundled photographs.

Only photographs that ship inside scikit-image's wheel are used (read straight from the
package's data folder, never through ``skimage.data``'s fetchers, which may download), so the
build needs no network. Each photo is scaled to a few sizes and cut into 256x256 crops on a
128-pixel grid; A is the Canny edge map (black lines on white, like edges2shoes), B the photo.
Whole photographs are held out for val and test. The result is written once, atomically, into
the cache folder in the aligned format, so every other code path sees an ordinary dataset.
"""
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fastp2p.data.errors import DataError

RECIPE_VERSION = 1
CROP = 256
GRID_STRIDE = 128
SHORT_SIDES = (256, 384, 512)
CANNY_SIGMA = 2.0
TASKS = ("edges2photo", "gray2color")
# Colour photographs bundled in scikit-image's wheel (skimage/data/), by split.
PHOTOS = {
    "train": ("astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
              "retina.jpg", "ihc.png"),
    "val": ("chelsea.png",),
    "test": ("coffee.png",),
}


def cache_root() -> Path:
    """$FASTP2P_CACHE, else ~/.cache/fastp2p."""
    return Path(os.environ.get("FASTP2P_CACHE") or Path.home() / ".cache" / "fastp2p")


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


def _grid(length: int) -> list[int]:
    starts = list(range(0, length - CROP + 1, GRID_STRIDE))
    if starts[-1] != length - CROP:
        starts.append(length - CROP)
    return starts


def _condition(photo: np.ndarray, task: str) -> np.ndarray:
    """The A image of the pair for the whole scaled photo (uint8 HxWx3)."""
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    if task == "gray2color":
        return np.repeat(gray[:, :, None], 3, axis=2)
    from skimage.feature import canny
    edges = canny(gray.astype(np.float32) / 255.0, sigma=CANNY_SIGMA)
    return np.repeat(np.where(edges, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _write_pairs(source: Path, task: str, out_dir: Path) -> int:
    with Image.open(source) as img:
        photo = img.convert("RGB")
    count = 0
    for short in SHORT_SIDES:
        width, height = photo.size
        if short > min(width, height):
            continue
        scale = short / min(width, height)
        size = (max(CROP, round(width * scale)), max(CROP, round(height * scale)))
        scaled = np.asarray(photo.resize(size, Image.Resampling.BICUBIC))
        condition = _condition(scaled, task)
        for y in _grid(size[1]):
            for x in _grid(size[0]):
                window = (slice(y, y + CROP), slice(x, x + CROP))
                pair = np.concatenate([condition[window], scaled[window]], axis=1)
                name = f"{source.stem}_s{short}_y{y}_x{x}.jpg"
                Image.fromarray(pair).save(out_dir / name, quality=95)
                count += 1
    return count


def _fingerprint(task: str) -> str:
    digest = hashlib.sha256(f"{task}/v{RECIPE_VERSION}".encode())
    for split in PHOTOS.values():
        for name in split:
            digest.update(_bundled_photo(name).read_bytes())
    return digest.hexdigest()[:12]


def build_default_dataset(out_dir: Path, task: str) -> dict:
    """Write the aligned train/val/test folders into ``out_dir``; returns pair counts."""
    counts = {}
    for split, names in PHOTOS.items():
        (out_dir / split).mkdir(parents=True)
        counts[split] = sum(_write_pairs(_bundled_photo(n), task, out_dir / split) for n in names)
    return counts


def default_dataroot(task: str = "edges2photo") -> Path:
    """Path of the embedded default dataset (aligned format), building it on first use.

    ``task``: "edges2photo" (Canny edges -> photo, the default) or "gray2color".
    """
    if task not in TASKS:
        raise DataError(f"default dataset task {task!r} is not one of {', '.join(TASKS)}")
    root = cache_root()
    final = root / f"default-{task}-{_fingerprint(task)}"
    if final.is_dir():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=root))
    except OSError as error:
        raise DataError(f"{root}: cannot create the cache folder for the default dataset "
                        f"({error}); set FASTP2P_CACHE to a writable folder or pass "
                        "--dataroot") from None
    try:
        build_default_dataset(building, task)
        try:
            os.rename(building, final)    # atomic: a reader sees no folder or a whole one
        except OSError:
            if not final.is_dir():        # not another process finishing first: a real failure
                raise
    except OSError as error:
        raise DataError(f"{final}: building the default dataset failed ({error}); nothing was "
                        "left behind: free some space or set FASTP2P_CACHE to another folder, "
                        "and run again") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final
