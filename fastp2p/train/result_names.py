"""The names of ``fastp2p test``'s outputs: each image's ``{name}_{label}.png`` files and its
heading on the page, unique within a run and short enough for a file system."""
import hashlib
import os
from pathlib import Path


def names_root(args):
    """The folder output names are relative to: DATAROOT/PHASE (DATAROOT with --dataset_mode
    single, which reads it), or for a packed split the image folder it was packed from (its
    index records it: the pairs' paths are under it), so a folder and its pack give the same
    names. None without --dataroot."""
    if not args.dataroot:
        return None
    if args.dataset_mode == "single":
        return Path(args.dataroot)
    from fastp2p.data.packed_index import is_packed, read_index

    phase_dir = Path(args.dataroot) / args.phase
    if not is_packed(phase_dir):
        return phase_dir
    index = read_index(phase_dir)
    return Path(index["dataroot"]) / str(index.get("phase", phase_dir.name))


def single_heading(name: str, path: Path, phase_dir) -> str:
    """A --dataset_mode single image's heading on the page: its output name and its file
    ("x (x.png)", "x-2 (x.jpg)"), as the name alone left x.png and x.jpg, whose stems collide,
    untold apart (write_html escapes it)."""
    try:
        source = path.relative_to(phase_dir).as_posix()
    except (TypeError, ValueError):   # no --dataroot, or a path recorded elsewhere
        source = path.name
    return f"{name} ({source})"


def output_name(path: Path, phase_dir, taken: set) -> str:
    """The name of one image's outputs, added to ``taken``: its file stem, as the reference
    names them, unless an earlier image took that stem (datasets are listed recursively, so
    ``a/1.png`` and ``b/1.png`` both have stem 1): then its path under ``phase_dir`` with the
    separators as ``_`` (``b_1``; its folder and stem when it is not under ``phase_dir``),
    and ``-2``, ``-3``, ... after that if even this is taken. A name too long for a file name
    once its label and a save's temporary prefix are added keeps its first bytes and a hash of
    the whole (``fit_file_name``)."""
    name = fit_file_name(path.stem)
    if name in taken:
        try:
            parts = path.relative_to(phase_dir).with_suffix("").parts
        except (TypeError, ValueError):   # no --dataroot, or a path recorded elsewhere
            parts = (path.parent.name, path.stem)
        base = name = fit_file_name("_".join(part for part in parts if part))
        count = 2
        while name in taken:
            name, count = f"{base}-{count}", count + 1
    taken.add(name)
    return name


# File systems cap a file name at 255 bytes. An output's file is ".NAME_fake_B.png.tmp-PID.png"
# while it is written (atomic_files.temporary_sibling): 28 bytes besides NAME with a 7-digit
# PID. 200 leaves room for the "-2", "-3", ... of a collision.
NAME_BYTES = 200


def fit_file_name(name: str) -> str:
    """``name`` if it is at most NAME_BYTES as a file name; else its first characters that
    fit and 16 hex digits of its SHA-256, so different long names stay different. Before, such
    a name failed the run at its image, after the images before it were written."""
    encoded = os.fsencode(name)
    if len(encoded) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    room, head = NAME_BYTES - len(digest) - 1, []
    for char in name:   # whole characters: a byte the file system could not decode stays one
        room -= len(os.fsencode(char))
        if room < 0:
            break
        head.append(char)
    return f"{''.join(head)}-{digest}"
