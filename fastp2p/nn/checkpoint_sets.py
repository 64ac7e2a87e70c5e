"""Reading a fastp2p checkpoint set as its manifest records it, for every loader of its files.

``fastp2p train`` saves each set (``CHECKPOINTS/NAME/LABEL_net_G.pth``, ``LABEL_net_D.pth``,
``LABEL_train_state.pth``) with a manifest, ``LABEL_checkpoint.json``, naming each file's size,
SHA-256 and temporary name (fastp2p.train.checkpoints writes them). The manifest is the commit
point: a save killed after it and before its renames leaves the committed files under their
temporary names, and a loader must take those, not the previous save's files still at the
final names. This is the read side, in the nn layer so that ``from_checkpoint`` and
``load_state_dict`` of a path (``load_file``) load what ``fastp2p test`` and ``--continue_train``
load. Reading writes nothing: the next ``fastp2p train`` of the run finishes the renames.
"""
import hashlib
from pathlib import Path

from fastp2p.checkpoint_names import MANIFEST_SUFFIX, SET_FILE_SUFFIXES
from fastp2p.file_reads import open_to_read
from fastp2p.json_files import read_json
from fastp2p.nn.safe_load import load_safely

MANIFEST_FORMAT = "fastp2p-checkpoint"
_BLOCK = 1 << 22
# The most of a manifest that is read: fastp2p's are under 1 KiB (three files' names, sizes and
# checksums); a generous bound for hand-edited ones, so that a huge file (a sparse 3 GB one took
# 3.5 GB of memory, then MemoryError) is refused as unreadable before it is read.
MAX_MANIFEST_BYTES = 1 << 20
# The highest generation a manifest may hold: a save counts one up from the highest here, and
# a hand-edited 4300-digit one (the most Python's json reads) made the next one unwritable, so
# every save failed after an epoch of training; a save past it is refused in one line naming
# the manifest at the bound (fastp2p.train.checkpoints). fastp2p's count one a save; half an int64
# (the bound of fastp2p's option counts) is more saves than any run makes. A manifest's step
# has the same bound: messages print it as it is.
MAX_GENERATION = 2 ** 62 - 1
# How many newer sets a load takes in turn where a run commits one while a file is read (each
# save replaces the files a loader was about to read): a bound, so that a run saving faster
# than files can be read ends the load with an error, not an endless loop.
MAX_SET_CHANGES = 4


def matching_file(path: Path, entry: dict):
    """An open handle of ``path`` (at offset 0) if its size and SHA-256 are ``entry``'s (a
    manifest's record of a file); None otherwise, or if there is no such file."""
    try:
        handle = open_to_read(path)
    except FileNotFoundError:
        return None
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: handle.read(_BLOCK), b""):
        digest.update(block)
        size += len(block)
    if size == entry["size"] and digest.hexdigest() == entry["sha256"]:
        handle.seek(0)
        return handle
    handle.close()
    return None


def in_this_folder(name) -> bool:
    """Whether a manifest's file name is a plain name directly in the checkpoint folder (no
    folder part, not "", "." or ".."): a manifest written by hand must not make a loader read,
    or a writer rename or remove, a file elsewhere."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


def read_manifest(path: Path, advice: str) -> dict:
    """The manifest at ``path``, checked: at most MAX_MANIFEST_BYTES, its format, its
    generation (an int from 0 to MAX_GENERATION: the next save's is one more,
    ``"generation": Infinity`` or a 4300-digit one made every save fail), its step (an int
    in the same bounds: messages print it as it is) and, for each file it lists, size,
    SHA-256 and temporary name, all names of files in its folder. Raises ValueError ending
    with ``advice`` (what the reader should do) for anything else."""
    try:
        manifest = read_json(path, max_bytes=MAX_MANIFEST_BYTES)
        files = manifest["files"]
        valid = (manifest.get("format") == MANIFEST_FORMAT
                 and _is_count(manifest["generation"]) and _is_count(manifest["step"])
                 and isinstance(files, dict)
                 and all(isinstance(entry.get("size"), int)
                         and isinstance(entry.get("sha256"), str)
                         and isinstance(entry.get("staged"), str)
                         for entry in files.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: unreadable checkpoint manifest ({err}); {advice}") from None
    if not valid:
        raise ValueError(f"{path}: not a fastp2p checkpoint manifest; {advice}")
    for name in (name for final, entry in files.items() for name in (final, entry["staged"])):
        if not in_this_folder(name):
            raise ValueError(f"{path}: not a fastp2p checkpoint manifest: it names {name!r}, "
                             f"which is not a file of this folder; {advice}")
    return manifest


def _is_count(value) -> bool:
    """An int (not a bool, nor a float: json reads Infinity) from 0 to MAX_GENERATION."""
    return type(value) is int and 0 <= value <= MAX_GENERATION


def load_recorded(folder: Path, label: str, suffix: str, manifest: dict, advice: str,
                  map_location="cpu"):
    """``load_recorded_by``'s state alone."""
    return load_recorded_by(folder, label, suffix, manifest, advice, map_location)[0]


def load_recorded_by(folder: Path, label: str, suffix: str, manifest: dict, advice: str,
                     map_location="cpu") -> tuple:
    """(its state, the manifest it was loaded by): load ``folder/LABEL_SUFFIX`` as
    ``manifest`` (its set's, from ``read_manifest``) records it: the file itself, or the
    temporary file of a committed save whose rename did not happen yet (``load_safely``:
    weights only). Where neither is the recorded file, the manifest is read again: a run may
    have committed a newer set and renamed its files since ``manifest`` was read, and the
    newer set's file is loaded, by the manifest read last (its step and generation are the
    save's loaded). Raises ValueError ending with ``advice`` where the manifest lists no such
    file or, on a manifest that stays the same, neither file is the one it records;
    ValueError too where the set changed MAX_SET_CHANGES times while the file was read."""
    final = Path(folder) / f"{label}_{suffix}"
    manifest_path = final.parent / f"{label}_{MANIFEST_SUFFIX}"
    for _ in range(MAX_SET_CHANGES + 1):
        handle = _recorded_file(final, manifest_path, manifest, advice)
        if handle is not None:
            with handle:
                return (load_safely(handle, map_location=map_location, name=str(final)),
                        manifest)
        reread = read_manifest(manifest_path, advice)
        if reread == manifest:
            raise ValueError(
                f"{final} is not the file its manifest {final.parent.name}/{manifest_path.name} "
                f"records (generation {manifest['generation']}, step {manifest['step']}): the "
                f"set was mixed by hand or the file is damaged; {advice}")
        manifest = reread
    raise ValueError(f"{final}: its set ({manifest_path}) changed {MAX_SET_CHANGES + 1} times "
                     "while the file was read: a run is saving into it faster than it can be "
                     "read; load it again, or once the run has ended")


def _recorded_file(final: Path, manifest_path: Path, manifest: dict, advice: str):
    """An open handle of the file ``manifest`` records for ``final`` (``final`` itself or its
    temporary file), or None where neither is that file. Raises ValueError ending with
    ``advice`` where the manifest lists no such file."""
    entry = manifest["files"].get(final.name)
    if entry is None:
        raise ValueError(f"{manifest_path} does not list {final.name}; {advice}")
    # final, then the staged file, then final again: another process may be finishing the
    # rename in between (fastp2p.train.checkpoints' prepare), and a rename is atomic
    for candidate in (final, final.parent / entry["staged"], final):
        handle = matching_file(candidate, entry)
        if handle is not None:
            return handle
    return None


def load_file(path, map_location="cpu"):
    """``load_safely(path)``, except for a file of a fastp2p checkpoint set
    (``NAME/LABEL_net_G.pth`` and the like, beside its manifest ``LABEL_checkpoint.json``),
    loaded as the manifest records it (``load_recorded``), as ``fastp2p test`` and
    ``--continue_train`` load it: after a save was killed between its commit and its renames,
    that is the save's file still under its temporary name, not the previous save's file at
    ``path``. Nothing is written. Raises ValueError where neither ``path`` nor its temporary
    file is the file the manifest records (a file put there by hand, or damaged), or where the
    manifest is unreadable; loading a file that is missing, like its temporary file, raises
    FileNotFoundError as for any path. A file its manifest does not list (no fastp2p save
    writes one so) loads as it is, unchecked, as a file of a set with no manifest does."""
    path = Path(path)
    suffix = next((suffix for suffix in SET_FILE_SUFFIXES if path.name.endswith("_" + suffix)),
                  None)
    if suffix is not None:
        label = path.name[:-len(suffix) - 1]
        manifest_path = path.parent / f"{label}_{MANIFEST_SUFFIX}"
        if manifest_path.is_file():
            advice = (f"copy {path.name} out of the run's folder to load it as it is, or load "
                      "another of the run's checkpoints")
            manifest = read_manifest(manifest_path, advice)
            entry = manifest["files"].get(path.name)
            if entry is not None and (path.exists() or (path.parent / entry["staged"]).exists()):
                return load_recorded(path.parent, label, suffix, manifest, advice, map_location)
    return load_safely(path, map_location=map_location)
