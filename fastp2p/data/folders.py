"""Finding paired images on disk and checking them before training starts.

Two layouts, as the reference implementation and the pix2pix datasets ship them:
- aligned: ``DATAROOT/PHASE/*.jpg`` (any depth), each image A|B side by side;
- two folders: ``DATAROOT/PHASE/A/x.png`` pairs with ``DATAROOT/PHASE/B/x.jpg`` by file stem.
The scan reads image headers only (fast); with ``--skip-bad`` it decodes every file so that
truncated ones are found and skipped up front too.
"""
import errno
import heapq
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastp2p.atomic_files import left_by_dead_process
from fastp2p.command_errors import says_for_its_node
from fastp2p.data.errors import (DataError, counted, print_note, raise_or_report, shown_path,
                                 what_to_do)
from fastp2p.data.packed_index import shards_without_index
from fastp2p.data.transforms import Preprocess, multiple_of_4_size, scaled_width_size
from fastp2p.terminal import stderr_bar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff")
# Modes whose output size follows the input size, so images whose output sizes differ cannot
# be batched together.
SIZE_KEEPING_MODES = ("none", "scale_width")


def output_size(config: Preprocess, width: int, height: int) -> tuple[int, int]:
    """(w, h) of a half of ``width`` x ``height`` after a size-keeping --preprocess (the
    network's input size): scale_width keeps only the aspect ratio and none rounds each side
    to a multiple of 4, as the reference's transform does, so different halves may give the
    same size."""
    if config.mode == "scale_width":
        return scaled_width_size(width, height, config.load_size, config.crop_size)
    return multiple_of_4_size(width, height)


@dataclass(frozen=True)
class OwnSizes:
    """Items loaded one at a time (fastp2p test) keep their own sizes under a size-keeping
    --preprocess, for a network that takes only sides that are multiples of ``multiple``;
    ``network`` names it in messages (e.g. "--netG unet_256")."""
    multiple: int
    network: str


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    size: tuple[int, int]     # (width, height) of the whole file


def list_images(folder: Path, unlisted: list | None = None, leave_out=()) -> list[Path]:
    """Image files under ``folder`` (recursively, as the reference's make_dataset), sorted as
    it sorts them: by the whole path as a string (``a b.png`` before ``a/1.png``), not folder
    by folder.

    Links are followed, to folders as to files: a dataset assembled from links holds the
    images they lead to (the reference's os.walk, and pathlib's rglob, skip linked folders
    without a word). Each folder is listed once, by its real path: a link to a folder listed
    already, or to ``folder`` or a folder above it (a loop), is not followed, and named on
    stderr. A broken link with an image name is listed, so that reading it names it
    (``read_info``) instead of the dataset shrinking without a word; so is an image-named entry
    whose kind cannot be told (in a folder without search permission). An image-named FIFO or
    device (or a link to one) is left out, as reading it could wait forever, and named on
    stderr.

    A subfolder that cannot be listed is a DataError naming it; with ``unlisted`` (--skip-bad)
    it goes there as (path, why) instead. Other files are left out as the reference leaves them
    out, but named on stderr: a folder of .webp or .gif images should not look like an empty or
    smaller dataset without a word. So are the temporary files (``.NAME.tmp-PID.jpg``) of a
    fastp2p write that was stopped (``pack --synthetic``'s workers ended by a Ctrl-C): empty or
    torn images, no part of the dataset. Reading a dataset deletes nothing in it; the next
    ``fastp2p pack --synthetic`` into that folder removes them.

    ``leave_out``: folders fastp2p writes (a --results_dir, a --checkpoints_dir): where one
    lies under ``folder``, its subtree is not listed, and one stderr line says so; else each
    run would read the previous one's outputs back as input (``x_fake_fake.png``).
    """
    images, others, specials, not_followed, leftovers = [], [], [], [], []
    outputs = _folders_below(Path(folder), leave_out)
    for entry in _entries_under(Path(folder), not_followed, unlisted, outputs):
        path = Path(entry.path)
        if entry.name.startswith(".") and left_by_dead_process(path):
            leftovers.append(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            (images if _may_be_image_file(entry) else specials).append(path)
        elif not entry.name.startswith(".") and _is_file(entry):
            others.append(path)
    _name_left_out(folder, others, "file", f"(only {'/'.join(IMAGE_EXTENSIONS)} images are "
                                           "read)")
    _name_left_out(folder, specials, "special file", "named like an image (a FIFO, socket "
                                                     "or device, or a link to one: reading it "
                                                     "could wait forever)")
    _name_left_out(folder, leftovers, "temporary file", "that a stopped fastp2p left (safe to "
                                                        "delete)")
    _name_left_out(folder, outputs.met, "folder", "that fastp2p writes its outputs in "
                                                  "(--results_dir, --checkpoints_dir: they "
                                                  "are no input)")
    _name_left_out(folder, not_followed, "linked folder", "leading to a folder above (a "
                                                          "loop) or to one listed already (not "
                                                          "followed: each folder is listed "
                                                          "once)")
    return sorted(images, key=str)


@dataclass
class _Outputs:
    """The real paths of the output folders a listing leaves out, and those it ``met``."""
    real_paths: set
    met: list


def _folders_below(folder: Path, candidates) -> _Outputs:
    """_Outputs of the ``candidates`` that lie strictly under ``folder`` (one that holds
    ``folder`` itself, a --checkpoints_dir ".", leaves nothing out)."""
    root = Path(os.path.realpath(folder))
    real_paths = {os.path.realpath(candidate) for candidate in candidates}
    return _Outputs({path for path in real_paths if root in Path(path).parents}, [])


def _entries_under(folder: Path, not_followed: list, unlisted: list | None,
                   outputs: _Outputs):
    """Every entry (``os.DirEntry``) under ``folder``, at any depth, but folders: those are
    walked into, through links too, each real folder once. Folders that are no links are walked
    first, then links in path order, so that a folder is listed under its own name and the
    second way to it is the one not followed; those go to ``not_followed``, as do links to
    ``folder`` or a folder above it. The folders of ``outputs`` are not walked into (they go
    to its ``met``). Iterative: a deep tree or a long chain of links cannot exhaust the
    recursion limit."""
    real = os.path.realpath(folder)
    seen = {real, *map(str, Path(real).parents)}
    folders, links = [folder], []
    while folders or links:
        current = folders.pop() if folders else heapq.heappop(links)
        if current is not folder:
            real = os.path.realpath(current)
            if real in outputs.real_paths:
                outputs.met.append(current)
                continue
            if real in seen:
                not_followed.append(current)
                continue
            seen.add(real)
        for entry in _folder_entries(current, None if current is folder else unlisted):
            if not _is_folder(entry):      # a file, a link to one, or a broken link
                yield entry
            elif entry.is_symlink():
                heapq.heappush(links, Path(entry.path))
            else:
                folders.append(Path(entry.path))


def _folder_entries(folder: Path, unlisted: list | None) -> list[os.DirEntry]:
    """``folder``'s entries. One that cannot be listed is a DataError naming it (its images
    would otherwise be missing without a word), or, with ``unlisted``, added there."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as error:
        why = f"cannot list this folder ({error.strerror or error})"
        if unlisted is None:
            raise DataError(f"{folder}: {why}; make it readable or move it out of the "
                            "dataset") from None
        unlisted.append((folder, f"{why}; its images are left out"))
        return []


def _is_folder(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a folder or a link to one; a link that cannot be resolved (a loop of
    links) is not: it is listed, and reading it names it."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _may_be_image_file(entry: os.DirEntry) -> bool:
    """Whether ``entry``, named like an image, is listed: a file or a link to one, a broken
    link, or what cannot be told (reading either names what is wrong); not a FIFO or a device,
    which an image reader would wait on or misread (``list_images`` names those)."""
    try:
        return entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path))
    except OSError:     # e.g. a link in a folder without search permission
        return True


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _name_left_out(folder: Path, paths: list[Path], noun: str, why: str) -> None:
    """One stderr line naming the first few of ``paths`` (under ``folder``), if any: "ignoring
    N {noun}s in {folder} {why}: ..." (``why`` reads the same for one path as for several);
    under torchrun once per node (``print_note``)."""
    if not paths:
        return
    paths = sorted(paths)
    shown = ", ".join(str(p.relative_to(folder)) for p in paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    print_note(f"fastp2p: ignoring {counted(len(paths), noun)} in {folder} {why}: {shown}{more}")


def require_folder(folder: Path, expected: str) -> None:
    if not folder.is_dir():
        raise DataError(f"{shown_path(folder)}: folder not found; expected {expected} there "
                        "(check the dataset folder, --dataroot or pack's DATAROOT, --phase "
                        f"and --dataset_mode){images_placed_above(folder)}")


def images_placed_above(folder: Path) -> str:
    """``; PARENT holds images itself: move them into FOLDER`` where the missing ``folder``'s
    parent holds images (a --dataroot given as the folder of images, not as the folder of its
    splits), else ''."""
    try:
        with os.scandir(folder.parent) as entries:
            held = any(Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and entry.is_file()
                       for entry in entries)
    except OSError:
        return ""
    return f"; {folder.parent} holds images itself: move them into {folder}" if held else ""


# Formats whose mode I images are 16-bit grayscale in 0..65535: PNG (older Pillow), and PGM/PPM
# with a maxval above 255, whose values Pillow scales from 0..maxval to 0..65535.
SIXTEEN_BIT_I_FORMATS = ("PNG", "PPM")


def _unsupported_mode(img: Image.Image) -> str | None:
    """Why ``img``'s pixels cannot be read as 8-bit, or None. 16-bit grayscale is scaled (see
    ``decode_rgb``); 32-bit integer and float images (modes I and F, but for the mode I of
    SIXTEEN_BIT_I_FORMATS, which is 16-bit) carry no range a fixed scaling could honour: they
    are refused."""
    if img.mode == "F" or (img.mode == "I" and img.format not in SIXTEEN_BIT_I_FORMATS):
        kind = "32-bit float" if img.mode == "F" else "32-bit integer"
        return (f"{kind} image (mode {img.mode}) has no known range to scale to 8 bits; "
                "convert it to 8-bit or 16-bit")
    return None


def _too_large(error: Exception) -> str:
    """A whole image, not a damaged one, that Pillow refuses to decode as too large (its guard
    against decompression bombs: over twice ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    return f"image too large to decode (Pillow's decompression-bomb limit: {error})"


def _not_readable(path: Path, error: Exception) -> str | None:
    """Why the system could not read ``path``, when it is the system that refused (the error
    carries an errno), not the image decoder; None otherwise."""
    number = getattr(error, "errno", None)
    if not number:
        return None
    if number == errno.ENOENT:    # list_images lists broken links; or removed since
        if path.is_symlink():
            return f"broken link: it points to {os.readlink(path)}, which does not exist"
        return "file not found (removed while fastp2p ran?)"
    if number == errno.ELOOP:
        return (f"a loop of links, or a chain of links too long to follow: it points to "
                f"{os.readlink(path)}")
    if number in (errno.EACCES, errno.EPERM):
        return "cannot read it (permission denied)"
    return f"cannot read it ({error.strerror or error})"


def _apple_double_hint(path: Path) -> str:
    """What to add to the error of an unreadable ``._NAME.png``: most likely the resource fork
    macOS writes beside NAME.png on a disk without its metadata (AppleDouble), which a copied
    dataset brings along. Dot-files are read, as the reference reads them: only a hint."""
    if not path.name.startswith("._"):
        return ""
    return ("; its name says it is a macOS resource-fork file (AppleDouble), not an image: "
            "remove them (`dot_clean DATAROOT` on a Mac, or `find DATAROOT -name '._*' "
            "-delete`)")   # the line goes on with --skip-bad (raise_or_report)


def _open_naming_large(path: Path) -> Image.Image:
    """``Image.open(path)``; an image above Pillow's decompression-bomb warning limit (below
    twice it: above, Pillow refuses it, ``_too_large``) is named in one fastp2p line on stderr
    (``print_note``: under torchrun once per node) instead of Pillow's warning and its source
    line, and Pillow's warning of that size is silenced for the rest of the process, where the
    loader opens the image again (its workers inherit the filter). The scan calls this from one
    thread at a time."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombWarning as warning:
        pixels = re.search(r"\((\d+) pixels\)", str(warning))
        print_note(f"fastp2p: {path}: {pixels.group(1) if pixels else 'more'} pixels, above "
                   "Pillow's decompression-bomb warning limit of "
                   f"{Image.MAX_IMAGE_PIXELS}: read as it is (Pillow refuses twice that)")
        warnings.filterwarnings("ignore", re.escape(str(warning)), Image.DecompressionBombWarning)
        return Image.open(path)


def read_info(path: Path, decode: bool) -> ImageInfo:
    """Header (and, if ``decode``, all pixels) of one image; DataError names what is wrong."""
    try:
        with _open_naming_large(path) as img:
            if decode:
                img.load()
            problem = _unsupported_mode(img)
            info = ImageInfo(path, img.size)
    except UnidentifiedImageError:
        raise DataError("not a readable image (its content is not a known image format)"
                        f"{_apple_double_hint(path)}") from None
    except Image.DecompressionBombError as error:
        raise DataError(_too_large(error)) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(_not_readable(path, error) or f"truncated or corrupt image ({error})"
                        ) from None
    if problem:
        raise DataError(problem)
    return info


def decode_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB: the one decode of the folder datasets and ``fastp2p pack``.

    8-bit modes go through Pillow's ``convert("RGB")`` as the reference's. 16-bit grayscale
    (modes I;16*, and I as Pillow may open a 16-bit PNG or opens a PGM with maxval > 255,
    scaled to 0..65535), which ``convert`` clips to white above 255, is scaled to
    round(value / 257): 0 -> 0, 65535 -> 255, and a 16-bit image made from an 8-bit one
    (v * 257) gives back exactly v. Modes I (not PNG or PGM/PPM) and F are refused.
    """
    problem = _unsupported_mode(img)
    if problem:
        raise DataError(problem)
    if img.mode == "I" or img.mode.startswith("I;16"):
        wide = np.asarray(img).astype(np.int64).clip(0, 65535)
        img = Image.fromarray(((wide + 128) // 257).astype(np.uint8))
    # RGB holds no transparency: convert only carries it along in the copy's info (the pixels
    # do not change), and warns with Pillow's source line and no file name where a palette
    # image's is a byte string
    img.info.pop("transparency", None)
    return img.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """Decode one image as RGB (``decode_rgb``), with a one-line error naming the file if it
    cannot be."""
    try:
        with Image.open(path) as img:
            return decode_rgb(img)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    except Image.DecompressionBombError as error:
        raise DataError(f"{path}: {_too_large(error)}; shrink it, or remove it, or pass "
                        "--skip-bad (which checks every file up front)") from None
    except (OSError, SyntaxError, ValueError) as error:
        why = _not_readable(path, error) or f"cannot decode this image ({error})"
        advice = what_to_do(path, "fix or remove it, or pass --skip-bad (which checks every "
                                  "file up front)")
        raise DataError(f"{path}: {why}; {advice}") from None


def open_pair(a_path: Path, b_path: Path, aligned: bool) -> tuple[Image.Image, Image.Image]:
    """The (A, B) images of one pair, RGB: an aligned A|B image split at width // 2 (as the
    reference's AlignedDataset; ``b_path`` is the same file), or two files."""
    if not aligned:
        return open_rgb(a_path), open_rgb(b_path)
    pair = open_rgb(a_path)
    width, height = pair.size
    half = width // 2
    return pair.crop((0, 0, half, height)), pair.crop((half, 0, width, height))


# seconds the header reads of a scan run before their bar shows: about 0.3 ms an image (a 2-core
# AMD EPYC, warm cache), so a folder of a few thousand images gets none
HEADERS_BAR_AFTER_S = 1.0


def _scan(paths: list[Path], decode: bool, problems: list, progress: bool) -> list[ImageInfo]:
    """Each file's ImageInfo; its problem goes to ``problems`` instead. Decoding every file
    (``decode``, for --skip-bad) takes minutes on a large dataset, and reading every header
    seconds (13 s for 50k images): ``progress`` then shows a bar, for the headers only once they
    took HEADERS_BAR_AFTER_S (on a terminal only: ``disable=None``, as fastp2p test's, keeps it
    out of logs; under torchrun by each node's first process only). Threads do not make the
    headers faster: Pillow's parsing holds the GIL."""
    # every process of a node scans the same split onto the same terminal: N bars drawn over
    # each other, one line, flickered between the processes' counts
    if progress and says_for_its_node():
        paths = stderr_bar(paths, desc="checking images (--skip-bad)" if decode
                           else "reading image headers", unit="image", disable=None,
                           delay=0 if decode else HEADERS_BAR_AFTER_S)
    infos = []
    for path in paths:
        try:
            infos.append(read_info(path, decode))
        except DataError as error:
            problems.append((path, str(error)))
    return infos


def _check_consistent(infos: list[ImageInfo], half_sizes: dict, config: Preprocess,
                      problems: list, own_sizes: OwnSizes | None = None) -> set[Path]:
    """Too small for the crop or to round, sizes a size-keeping --preprocess cannot batch or
    the generator cannot take: the paths that fail. Grayscale among colour is taken, as the
    reference takes it: every image is read with convert("RGB")."""
    bad = set()
    if config.mode == "crop":
        for info in infos:
            width, height = half_sizes[info.path]
            if min(width, height) < config.crop_size:
                problems.append((info.path, f"{width}x{height} is smaller than --crop_size "
                                            f"{config.crop_size}; use --preprocess "
                                            "resize_and_crop or a smaller --crop_size"))
                bad.add(info.path)
    if config.mode == "none":
        for info in infos:
            width, height = half_sizes[info.path]
            if min(width, height) < 3:     # rounding to a multiple of 4 would leave nothing
                problems.append((info.path, f"{width}x{height} is too small to round to a "
                                            "multiple of 4"))
                bad.add(info.path)
    if config.mode in SIZE_KEEPING_MODES:
        sizes = {i.path: output_size(config, *half_sizes[i.path]) for i in infos
                 if i.path not in bad}
        if own_sizes:
            multiple = own_sizes.multiple
            bad |= _sizes_refused(
                sizes, half_sizes, config, problems,
                lambda size: size[0] % multiple == 0 and size[1] % multiple == 0,
                f"{own_sizes.network} takes only sides that are multiples of {multiple}; "
                f"resize it to multiples of {multiple} or use --preprocess resize_and_crop")
        elif sizes:   # a batch stacks items of one size
            common = Counter(sizes.values()).most_common(1)[0][0]
            bad |= _sizes_refused(
                sizes, half_sizes, config, problems, lambda size: size == common,
                f"most images become {common[0]}x{common[1]}; resize it or use --preprocess "
                "resize_and_crop")
    return bad


def _sizes_refused(sizes: dict, half_sizes: dict, config: Preprocess, problems: list, fits,
                   why: str) -> set:
    """The paths of ``sizes`` (path -> output size) whose size ``fits`` refuses, each added to
    ``problems`` with ``why`` its size does not do."""
    bad = set()
    for path, size in sizes.items():
        if not fits(size):
            width, height = half_sizes[path]
            problems.append((path, f"{width}x{height} becomes {size[0]}x{size[1]} with "
                                   f"--preprocess {config.mode}, but {why}"))
            bad.add(path)
    return bad


def _halves_of_other_sizes(infos: list[ImageInfo], config: Preprocess, problems: list) -> set:
    """A|B images of odd width whose halves a size-keeping --preprocess makes of different
    sizes: the reference splits at int(width / 2), so B is a pixel wider, which the other modes
    resize or crop away; but A's translation is compared with B pixel by pixel (the L1 loss,
    test's scores), so the halves must come out alike."""
    bad = set()
    if config.mode not in SIZE_KEEPING_MODES:
        return bad
    for info in infos:
        width, height = info.size
        a_half, b_half = (width // 2, height), (width - width // 2, height)
        a_out, b_out = output_size(config, *a_half), output_size(config, *b_half)
        if a_out != b_out:
            problems.append((info.path, f"width {width} is odd: its A half {a_half[0]}x{height} "
                                        f"becomes {a_out[0]}x{a_out[1]} with --preprocess "
                                        f"{config.mode} but its B half {b_half[0]}x{height} "
                                        f"{b_out[0]}x{b_out[1]}, and they are compared pixel by "
                                        "pixel; crop it to an even width or use --preprocess "
                                        "resize_and_crop"))
            bad.add(info.path)
    return bad


def scan_aligned(phase_dir: Path, config: Preprocess, skip_bad: bool,
                 limit: int | None = None, progress: bool = True,
                 skipped: list | None = None,
                 own_sizes: OwnSizes | None = None, leave_out=()) -> list[Path]:
    """The usable A|B images of one phase folder (the first ``limit`` in sorted order: of the
    good ones with ``skip_bad``, as a pack of the folder gives them); ``progress``: a bar while
    the image headers are read (after a second) and while --skip-bad decodes every file;
    ``skipped``: gets the (path, why) of each file skipped, instead of their listing on
    stderr; ``own_sizes``: the items are loaded one at a time
    (fastp2p test, batch size 1), so with a size-keeping --preprocess each may keep its own
    size, if its network takes it, instead of all one size; ``leave_out``: output folders
    not to list (``list_images``)."""
    problems = []   # with --skip-bad, subfolders that cannot be listed too
    paths = _aligned_images(phase_dir, problems if skip_bad else None, leave_out)
    # without --skip-bad any bad file stops the run, so only the first ``limit`` are checked
    paths = paths if skip_bad else paths[:limit]
    infos = _scan(paths, skip_bad, problems, progress)
    # the A half, split as the reference splits (B is a pixel wider where the width is odd)
    half_sizes = {i.path: (i.size[0] // 2, i.size[1]) for i in infos}
    bad = _halves_of_other_sizes(infos, config, problems)
    bad |= _check_consistent([i for i in infos if i.path not in bad], half_sizes, config,
                             problems, own_sizes)
    return _usable(infos, bad, problems, skip_bad, phase_dir, skipped, limit)


def refuse_split_without_images(phase_dir: Path, two_folders: bool, skip_bad: bool,
                                leave_out=()) -> None:
    """DataError where the scan of ``phase_dir`` (``scan_two_folders`` with ``two_folders``,
    else ``scan_aligned``) would refuse it before reading an image: a missing folder, or no
    image in it; said as that scan says it, without reading an image, so that train can say it
    before torch loads. Quick where images are there: it stops at the first file named like one
    and leaves the listing to the scan (which says it if that file is no image after all)."""
    unlisted = [] if skip_bad else None
    if not two_folders:
        if not _names_an_image(phase_dir, leave_out):
            _aligned_images(phase_dir, unlisted, leave_out)
        return
    for side, folder in _pair_folders(phase_dir).items():
        if not _names_an_image(folder, leave_out):
            _side_images(folder, side, unlisted, leave_out)


def _names_an_image(folder: Path, leave_out) -> bool:
    """Whether ``folder`` is a folder under which an entry is named like an image (outside
    ``leave_out``), or one of its subfolders cannot be listed: False where ``list_images``
    finds no image there for sure."""
    if not folder.is_dir():
        return False
    unlisted = []
    entries = _entries_under(folder, [], unlisted, _folders_below(folder, leave_out))
    try:
        named = any(Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS for entry in entries)
    except DataError:   # ``folder`` itself cannot be listed: the listing says so
        return False
    return named or bool(unlisted)


def _aligned_images(phase_dir: Path, unlisted: list | None, leave_out) -> list[Path]:
    """``list_images`` of an aligned phase folder; DataError for a missing folder, one of A/
    and B/ subfolders, or no image."""
    require_folder(phase_dir, "A|B images side by side (*.jpg, *.png)")
    if (phase_dir / "A").is_dir() and (phase_dir / "B").is_dir():
        raise DataError(f"{phase_dir}: holds A/ and B/ subfolders, not A|B images; pass "
                        "--dataset_mode two_folders")
    paths = list_images(phase_dir, unlisted, leave_out)
    if not paths:
        raise DataError(shards_without_index(phase_dir) or
                        f"{phase_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) found; put the "
                        "A|B images there or point --dataroot (pack: DATAROOT) at the right "
                        "folder")
    return paths


def _pair_folders(phase_dir: Path) -> dict:
    """{side: folder} of a two-folders phase folder; DataError where either is missing."""
    folders = {side: phase_dir / side for side in ("A", "B")}
    for side, folder in folders.items():
        require_folder(folder, f"the {side} images of the pairs")
    return folders


def _side_images(folder: Path, side: str, unlisted: list | None, leave_out) -> list[Path]:
    """``list_images`` of the A/ or B/ folder of a two-folders phase; DataError for none."""
    paths = list_images(folder, unlisted, leave_out)
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found; put the "
                        f"{side} images there")
    return paths


def scan_single(folder: Path, config: Preprocess, skip_bad: bool, limit: int | None = None,
                own_sizes: OwnSizes | None = None, leave_out=()) -> list[Path]:
    """The usable images under ``folder`` (any depth, sorted), each one whole image to
    translate without a target: --dataset_mode single, whose reference SingleDataset reads
    --dataroot itself, not a split of it (an A|B image is just an image there). ``limit``,
    ``own_sizes`` and ``leave_out`` as for ``scan_aligned``."""
    problems = []
    paths = list_images(folder, problems if skip_bad else None, leave_out)
    if not paths:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found; "
                        "--dataset_mode single translates the images under --dataroot itself "
                        "(not DATAROOT/PHASE): point --dataroot at their folder")
    paths = paths if skip_bad else paths[:limit]
    infos = _scan(paths, skip_bad, problems, progress=True)
    bad = _check_consistent(infos, {i.path: i.size for i in infos}, config, problems,
                            own_sizes)
    return _usable(infos, bad, problems, skip_bad, folder, None, limit)


def _usable(infos: list[ImageInfo], bad: set, problems: list, skip_bad: bool, folder: Path,
            skipped: list | None, limit: int | None) -> list[Path]:
    """The first ``limit`` paths of ``infos`` not in ``bad``, once ``problems`` were raised
    (or, with ``skip_bad``, reported: ``raise_or_report``)."""
    raise_or_report(problems, skip_bad, str(folder), skipped)
    good = [info.path for info in infos if info.path not in bad]
    if not good:
        raise DataError(f"{folder}: every image was bad and skipped; nothing left to load")
    return good[:limit]


def _stems(folder: Path, paths: list[Path], problems: list) -> tuple[dict, dict]:
    """``paths`` (under ``folder``) by their stem, the name they pair by ({stem: path}), and
    the stems of several files ({stem: paths}): each of those is added to ``problems`` and
    paired with nothing, as no file of them is the pair's more than another."""
    by_key = {}
    for path in paths:
        by_key.setdefault(str(path.relative_to(folder).with_suffix("")), []).append(path)
    ambiguous = {key: same for key, same in by_key.items() if len(same) > 1}
    for same in ambiguous.values():
        for path in same:
            others = ", ".join(other.name for other in same if other != path)
            problems.append((path, f"has the same name as {others}, so its pair is "
                                   "ambiguous; rename all but one of them"))
    return {key: same[0] for key, same in by_key.items() if len(same) == 1}, ambiguous


def scan_two_folders(phase_dir: Path, config: Preprocess, skip_bad: bool,
                     limit: int | None = None, progress: bool = True,
                     skipped: list | None = None, own_sizes: OwnSizes | None = None,
                     leave_out=()) -> list[tuple[Path, Path]]:
    """(A, B) path pairs of one phase folder, paired by file stem (the first ``limit``: of the
    good ones with ``skip_bad``); ``progress``, ``skipped``, ``own_sizes`` and ``leave_out``
    as for ``scan_aligned``."""
    folders = _pair_folders(phase_dir)
    problems = []
    by_stem, ambiguous = {}, {}
    for side, folder in folders.items():
        paths = _side_images(folder, side, problems if skip_bad else None, leave_out)
        by_stem[side], ambiguous[side] = _stems(folder, paths, problems)
    for side, other in (("A", "B"), ("B", "A")):
        for key, path in by_stem[side].items():
            if key in ambiguous[other]:
                problems.append((path, f"its partner is ambiguous: {folders[other]} holds "
                                       f"{len(ambiguous[other][key])} files named {key}.*; "
                                       "rename all but one"))
            elif key not in by_stem[other]:
                problems.append((path, f"has no partner named {key}.* in {folders[other]}; "
                                       "A and B files pair by name"))
    keys = sorted(by_stem["A"].keys() & by_stem["B"].keys())
    pairs = [(by_stem["A"][k], by_stem["B"][k]) for k in keys]
    pairs = pairs if skip_bad else pairs[:limit]
    files = [p for pair in pairs for p in pair]
    infos = {i.path: i for i in _scan(files, skip_bad, problems, progress)}
    complete = []
    for a_path, b_path in pairs:
        if a_path in infos and b_path in infos:
            if infos[a_path].size != infos[b_path].size:
                (aw, ah), (bw, bh) = infos[a_path].size, infos[b_path].size
                problems.append((a_path, f"is {aw}x{ah} but its partner {b_path} is {bw}x{bh}; "
                                         "resize them to the same size"))
            else:
                complete.append((a_path, b_path))
    a_infos = [infos[a] for a, _ in complete]
    bad = _check_consistent(a_infos, {i.path: i.size for i in a_infos}, config, problems,
                            own_sizes)
    bad |= _check_consistent([infos[b] for _, b in complete],
                             {b: infos[b].size for _, b in complete}, config, problems,
                             own_sizes)
    raise_or_report(problems, skip_bad, str(phase_dir), skipped)
    good = [(a, b) for a, b in complete if a not in bad and b not in bad]
    if not good:
        raise DataError(f"{phase_dir}: every pair was bad and skipped; nothing left to load")
    return good[:limit]
