"""Checkpoints in the reference layout; each label's files change all together or not at all.

``CHECKPOINTS/NAME/{label}_net_G.pth`` and ``{label}_net_D.pth`` are plain state_dicts of the
unwrapped networks on the CPU (the reference implementation loads them as they are);
``{label}_train_state.pth`` holds everything else a bit-exact resume needs, as tensors and plain
containers only, so every file loads with ``weights_only=True`` (no code runs from a checkpoint);
``{label}_checkpoint.json``, the manifest, names the save's generation and step and each file's
size and SHA-256. ``label`` is ``latest`` or an epoch number.

A save writes every file to a temporary sibling and fsyncs it; then it replaces the manifest
(the commit point), then renames the temporary files over the old ones. A crash or a failed
write before the manifest's rename leaves the previous set as it was; a crash after it leaves
some files under their temporary names, which the manifest records: the next ``fastp2p train``
finishes the renames, and loading takes each file whose checksum the manifest names, so a
resume never mixes files of two saves. The labels of one save (``latest`` and an epoch or
``iter_N``) are committed one by one, ``latest`` last, so a ``latest`` set implies that the
other labels of its save are on disk too. Temporary files of killed saves are removed by the
next run of the same name.
"""
import errno
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from fastp2p.atomic_files import (TemporaryFile, fsync_directory, naming_the_file,
                                  remove_left_by_dead_processes, replace_text)
from fastp2p.checkpoint_names import (MANIFEST_SUFFIX, NETWORK_SUFFIXES, TRAIN_STATE_SUFFIX,
                                      holds_networks_only, loadable_sets, nothing_to_resume)
from fastp2p.file_reads import read_error_advice
from fastp2p.inodes import disk_limit_advice
from fastp2p.nn.checkpoint import CheckpointMismatch, load_safely, weights_problem
from fastp2p.nn.checks import with_article
from fastp2p.nn.compat import fits_the_network_it_looks_like
from fastp2p.nn.checkpoint_sets import (MANIFEST_FORMAT, MAX_GENERATION, load_recorded,
                                        load_recorded_by, matching_file, read_manifest)
from fastp2p.train.background_writer import host_copy
from fastp2p.train.engine import unwrap

_ROLES = {"G": "generator", "D": "discriminator"}
# 2: RNG states, optimizers and counters as tensors and plain containers (weights_only loads)
TRAIN_STATE_FORMAT = 2
SET_SUFFIXES = (MANIFEST_SUFFIX, NETWORK_SUFFIXES["G"], NETWORK_SUFFIXES["D"], TRAIN_STATE_SUFFIX)
# labels fastp2p and the reference save under: latest, an epoch, iter_IMAGES (--save_by_iter)
_SET_FILE = re.compile(r"^(latest|iter_\d+|\d+)_(" + "|".join(map(re.escape, SET_SUFFIXES)) + ")$")


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed; the previous checkpoint files are unchanged."""


class MissingCheckpoint(ValueError):
    """A set has no file of the network asked for (its message says which sets there are)."""


def what_to_fix(err: BaseException) -> str:
    """The first words of the advice after a failed write: a file larger than the process may
    write (EFBIG: a job's `ulimit -f`, say) needs no free disk space, but a higher limit; nor
    does a file that could not be opened for a limit on open files (EMFILE: `ulimit -n`;
    ENFILE: the system's), nor a disk out of inodes (ENOSPC with bytes free: deleting any
    files helps there, not only large ones) or a quota (EDQUOT)."""
    if isinstance(err, OSError) and err.errno == errno.EFBIG:
        return "Raise the file size limit (ulimit -f) or write to another disk"
    advice = limit_advice(err)
    if advice is None:
        return "Free disk space or fix the folder's permissions"
    return advice[0].upper() + advice[1:]


def limit_advice(err: BaseException) -> str | None:
    """What to do where a write or read stopped at a limit that free disk space does not lift,
    as a phrase: open files (EMFILE, ENFILE: ``read_error_advice``), or the disk's inodes or a
    quota (``disk_limit_advice``); None for anything else."""
    if isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE):
        return read_error_advice(err)
    return disk_limit_advice(err)


def describe_os_error(err: OSError) -> str:
    """``PATH: what the errno means`` (e.g. "No space left on device"); without a file name
    (an error raised by a library's own reader), the error's text. Where a file stands in a
    folder's place (or a folder in a file's), that path and what it is, not the errno's words
    about another path (mkdir's "File exists", "Not a directory" of a path below it, a rename's
    "Is a directory" naming its temporary file)."""
    if err.filename is None:
        return str(err) or type(err).__name__
    if err.errno == errno.EISDIR and err.filename2 is not None:
        return f"{err.filename2}: is a folder, where a file is written; move it away"
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        in_the_way = _file_in_a_folders_place(Path(os.fsdecode(err.filename)))
        if in_the_way is not None:
            what = "a file" if in_the_way.is_file() else "a special file (a FIFO, device or socket)"
            return f"{in_the_way}: is {what}, where a folder is made; move it away"
    reason = os.strerror(err.errno) if err.errno else str(err)
    return f"{err.filename}: {reason}"


def described_with_disk_advice(err: OSError) -> str:
    """``describe_os_error``, and what to do where a disk limit other than its bytes was
    reached (``disk_limit_advice``: its inodes, a quota), which the errno's words do not say
    (ENOSPC's are those of a disk out of bytes)."""
    advice = disk_limit_advice(err)
    return describe_os_error(err) + (f"; {advice}" if advice else "")


def _file_in_a_folders_place(path: Path):
    """The first of ``path``'s parents (from the top), or ``path`` itself, that exists and is
    not a folder; None if there is none."""
    for candidate in (*reversed(path.parents), path):
        if not candidate.exists():
            return None
        if not candidate.is_dir():
            return candidate
    return None


class _HashingWriter:
    """A binary file that also counts and hashes what is written through it.

    torch.save's zip writer turns an error of ``write`` into its own RuntimeError ("unexpected
    pos ..."), which says neither the file nor the cause: the first OSError is kept in
    ``error`` so that the caller can report it instead."""

    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0
        self.error = None

    def write(self, data):
        try:
            written = self.handle.write(data)
        except OSError as err:
            self.error = self.error or err
            raise
        self.digest.update(data)
        self.size += len(data)
        return written

    def flush(self):
        self.handle.flush()


def _write_durably(obj, temp: TemporaryFile) -> dict:
    """``torch.save`` into ``temp``'s file, fsync it and close it; returns its manifest entry
    (size, sha256). Raises OSError naming the checkpoint file, ``temp.target`` (e.g. "No space
    left on device"), as ``atomic_files.replacing`` does: the hidden temporary name is none the
    user gave."""
    with naming_the_file(temp.target), temp.file as handle:
        writer = _HashingWriter(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError as err:
            if writer.error is None:
                raise
            raise writer.error from err
        handle.flush()
        os.fsync(handle.fileno())
    return {"size": writer.size, "sha256": writer.digest.hexdigest()}


def _unlink_quietly(path: Path) -> None:
    """Remove a temporary file after a failed write; the write's own error is the one reported
    (a file system that turned read-only may refuse this too)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def snapshot(netG, netD, train_state: dict) -> dict:
    """What a save writes, copied to the host (``host_copy``): the unwrapped networks'
    state_dicts as the reference saves them (CPU, contiguous) and the training state. Taken on
    the training thread; training may go on while ``CheckpointFolder.write`` writes it."""
    return host_copy({"G": unwrap(netG).state_dict(), "D": unwrap(netD).state_dict(),
                      "state": train_state})


RESUME_ADVICE = "resume from another --epoch or start again without --continue_train"


class CheckpointFolder:
    """``checkpoints_dir/name``: where a run's networks and training state live.

    ``advice``: what an error about a damaged or mixed set tells the reader to do (the default
    is a resuming trainer's; ``fastp2p test`` names its own)."""

    def __init__(self, checkpoints_dir, name, advice=RESUME_ADVICE):
        self.path = Path(checkpoints_dir) / name
        self.advice = advice

    def file(self, label, suffix) -> Path:
        return self.path / f"{label}_{suffix}"

    # ---- writing ----------------------------------------------------------------------------
    def save(self, labels, netG, netD, train_state: dict, step: int = 0) -> None:
        """Write G, D and the training state under every label (e.g. ["latest", "5"]), each
        label's set committed by its manifest; raises CheckpointWriteError on failure."""
        self.write(labels, snapshot(netG, netD, train_state), step)

    def write(self, labels, snapshot: dict, step: int = 0, replacing: bool = False) -> None:
        """``save`` from a ``snapshot(...)`` (any thread; one write at a time per folder).
        ``replacing``: the sets here are those of the run that --overwrite replaces (this is
        the new run's first save), so a failure leaves none of this run's to resume."""
        G, D = snapshot["G"], snapshot["D"]
        generation = self._next_generation()
        state = {"format": TRAIN_STATE_FORMAT, "generation": generation, **snapshot["state"]}
        staged = {}  # label -> {final path: (TemporaryFile, manifest entry)}
        committed = []
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for label in labels:
                staged[label] = {}
                for suffix, obj in ((NETWORK_SUFFIXES["G"], G), (NETWORK_SUFFIXES["D"], D),
                                    (TRAIN_STATE_SUFFIX, state)):
                    final = self.file(label, suffix)
                    temp = TemporaryFile(final)   # afresh: never written through a link
                    staged[label][final] = (temp, None)  # known before writing: removed on failure
                    staged[label][final] = (temp, _write_durably(obj, temp))
            # latest last: a kill between two commits leaves latest_* at the previous save,
            # so resuming from it saves the other labels again (latest first would leave a
            # resume past the point where they are saved, and them never written)
            for label in sorted(labels, key=lambda label: label == "latest"):
                self._commit(label, generation, step, staged[label])
                committed.append(label)
                for temp, _ in staged[label].values():
                    temp.rename_into_place()
        except (OSError, RuntimeError) as err:
            for label, files in staged.items():
                if label not in committed:
                    for temp, _ in files.values():
                        temp.file.close()
                        _unlink_quietly(temp.path)
            reason = describe_os_error(err) if isinstance(err, OSError) else str(err)
            raise CheckpointWriteError(f"could not write the checkpoint: {reason}; "
                                       f"{self._after_failed_write(committed, replacing, err)}"
                                       ) from err
        fsync_directory(self.path)

    def _after_failed_write(self, committed, replacing: bool, err: BaseException) -> str:
        """What a failed ``write`` (of ``err``) left on disk and what to do: --continue_train
        only where a set is there to resume (a first save that failed leaves none: it would be
        refused; ``replacing``: the sets there are another run's)."""
        fix = f"{what_to_fix(err)}, then"
        if committed:
            return (f"the new {'/'.join(committed)}_* set is recorded in its manifest and the "
                    f"next `fastp2p train` of this --name finishes moving it into place. {fix} "
                    "resume with --continue_train")
        if replacing:
            return (f"no checkpoint of this run was saved yet (those in {self.path} are the "
                    f"run --overwrite replaces). {fix} run again with --overwrite")
        # any set's networks: fastp2p's or the reference's (--continue_train loads both)
        if any(self.path.glob(f"*_{NETWORK_SUFFIXES['G']}")):
            return (f"the previous checkpoint files are unchanged. {fix} resume with "
                    "--continue_train")
        return f"no checkpoint was saved yet. {fix} run again without --continue_train"

    def _commit(self, label, generation, step, files) -> None:
        manifest = {"format": MANIFEST_FORMAT, "generation": generation, "step": step,
                    "files": {final.name: {**entry, "staged": temp.path.name}
                              for final, (temp, entry) in files.items()}}
        replace_text(self.file(label, MANIFEST_SUFFIX), json.dumps(manifest, indent=1))

    def _manifests(self):
        return sorted(self.path.glob(f"*_{MANIFEST_SUFFIX}"))

    def _next_generation(self, manifests=None) -> int:
        """One more than the highest generation of the manifests here (read_manifest's: an int
        from 0 to MAX_GENERATION), 1 for none: a ``"generation": Infinity`` or a 4300-digit one
        hand-edited in made every save fail, after a whole epoch of training. ``manifests``:
        ``_readable_manifests()``, where the caller has read them already. Raises
        CheckpointWriteError, before anything is written, past MAX_GENERATION: a manifest at
        the bound made every save of the run write one that read_manifest refuses, in silence,
        so the run could not be resumed."""
        if manifests is None:
            manifests = self._readable_manifests()
        last, path = max(((manifest["generation"], path) for path, manifest in manifests),
                         default=(0, None))
        if last == MAX_GENERATION:
            raise CheckpointWriteError(
                f"could not write the checkpoint: {path} records generation {last}, the "
                "highest a manifest may hold (fastp2p counts one a save: it was edited by "
                "hand), so the next save's manifest could not be read back; remove that set's "
                "files, then run again")
        return last + 1

    def _readable_manifests(self):
        """(path, manifest) of each manifest here that reads: a damaged one is reported if its
        set is ever loaded, and the other sets may be fine."""
        for path in self._manifests():
            try:
                yield path, self._read_manifest(path)
            except ValueError:
                continue

    def prepare(self) -> None:
        """Before a run writes here (main process): create the folder, finish the renames of a
        save that was interrupted after its commit, and remove temporary files that killed
        processes left. Raises OSError (e.g. a read-only folder), or CheckpointWriteError where
        no save could be written here (``_next_generation``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        manifests = list(self._readable_manifests())
        for _, manifest in manifests:
            for final_name, entry in manifest["files"].items():
                staged = self.path / entry["staged"]
                handle = matching_file(staged, entry)
                if handle is not None:
                    handle.close()
                    os.replace(staged, self.path / final_name)
        fsync_directory(self.path)
        # What is left under a temporary name is no committed file (those were just renamed),
        # even where a manifest names it: every save of a process reuses the same names, so a
        # later save killed mid-write leaves its partial file under the name the previous,
        # committed save's manifest lists.
        for folder in (self.path, self.path / "web", self.path / "web" / "images"):
            remove_left_by_dead_processes(folder)
        # a manifest at MAX_GENERATION refuses every save: said now, not after an epoch's work
        self._next_generation(manifests)

    # ---- a new run in an old run's folder (--overwrite) -------------------------------------
    def saved_sets(self) -> dict:
        """Label -> the files of each checkpoint set here, its manifest first: every
        ``*_checkpoint.json`` with the files it lists (and their temporary names), and the
        files of sets without a manifest (``latest_*``, ``iter_N_*``, ``N_*``, as the reference
        writes them). Only files that exist, directly in this folder."""
        sets = {}
        for manifest_path in self._manifests():
            label = manifest_path.name[:-len(MANIFEST_SUFFIX) - 1]
            names = [manifest_path.name] + [self.file(label, suffix).name
                                            for suffix in SET_SUFFIXES[1:]]
            try:
                for name, entry in self._read_manifest(manifest_path)["files"].items():
                    names += [name, entry["staged"]]
            except ValueError:
                pass  # a damaged manifest: its label's usual files are still the set's
            sets[label] = names
        for path in sorted(self.path.iterdir()) if self.path.is_dir() else ():
            match = _SET_FILE.match(path.name)
            if match:
                sets.setdefault(match.group(1), []).append(path.name)
        found = {label: [self.path / name for name in dict.fromkeys(names)
                         if (self.path / name).is_file() or (self.path / name).is_symlink()]
                 for label, names in sets.items()}
        return {label: paths for label, paths in found.items() if paths}

    def remove_sets(self, sets: dict) -> None:
        """Remove ``saved_sets()``' files, each set's manifest first (a set cut short is then
        one without a manifest, which --continue_train refuses); raises CheckpointWriteError."""
        for label, paths in sets.items():
            for path in paths:
                try:
                    path.unlink(missing_ok=True)
                except OSError as err:
                    raise CheckpointWriteError(
                        f"could not remove the previous run's checkpoint file: "
                        f"{describe_os_error(err)}; fix the folder's permissions and remove its "
                        f"{label}_* files by hand") from err
        fsync_directory(self.path)

    # ---- reading ----------------------------------------------------------------------------
    def _read_manifest(self, path: Path) -> dict:
        return read_manifest(path, self.advice)

    def manifest(self, label) -> dict | None:
        """The manifest of ``label``'s set, or None if there is none."""
        path = self.file(label, MANIFEST_SUFFIX)
        return self._read_manifest(path) if path.exists() else None

    def _load_checked(self, label, suffix, manifest: dict):
        """Load ``label``'s file ``suffix`` as the manifest records it: the file itself, or the
        temporary file of a committed save whose rename did not happen yet
        (fastp2p.nn.checkpoint_sets, which ``from_checkpoint`` of a path loads through too)."""
        return load_recorded(self.path, label, suffix, manifest, self.advice)

    def read_network(self, label, which: str, model_suffix: str = "") -> tuple[Path, Mapping]:
        """(the file G or D of ``label`` is loaded from, its state_dict): ``read_network_by``'s
        first two."""
        return self.read_network_by(label, which, model_suffix)[:2]

    def read_network_by(self, label, which: str, model_suffix: str = "") -> tuple:
        """(the file G or D of ``label`` is loaded from, its state_dict, the manifest it was
        loaded by: a save committed meanwhile is the newer one's, None without one), checked
        against the manifest when there is one (files of the reference implementation have
        none) and holding weights; for ``load_network``, or first to check options against it.
        ``model_suffix``: the file ``{label}_net_G{model_suffix}.pth`` instead, as the
        reference's --model test --model_suffix loads it."""
        suffix = NETWORK_SUFFIXES[which].replace(".pth", f"{model_suffix}.pth")
        path = self.file(label, suffix)
        # a manifest records its set's own files: a suffixed one is another tool's beside them
        manifest = None if model_suffix else self.manifest(label)
        if manifest is not None:
            state, manifest = load_recorded_by(self.path, label, suffix, manifest, self.advice)
        elif path.exists():
            state = load_safely(path, map_location="cpu")
        else:
            saved = loadable_sets(self.path, suffix)
            raise MissingCheckpoint(f"no checkpoint {path}: " + (
                f"pick a saved set ({saved})" if saved
                else f"train first (fastp2p train --name {self.path.name})"))
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: holds {with_article(type(state).__name__)}, not a network's "
                             f"state_dict; {self.advice}")
        problem = weights_problem(state)
        if problem is not None:
            raise ValueError(f"{path}: {problem}; {self.advice}")
        return path, state, manifest

    def load_network(self, net: torch.nn.Module, label, which: str, read=None) -> Path:
        """Load G or D of ``label`` into ``net`` (``read``: what ``read_network`` returned for
        it, when it was read already); returns the file. ``net`` may be built on the meta
        device: a check, without memory, that the file fits the options it was built from."""
        path, state = read if read is not None else self.read_network(label, which)
        # A meta network takes the file's tensors (copying into one is a no-op torch warns of).
        on_meta = any(parameter.is_meta for parameter in unwrap(net).parameters())
        try:
            unwrap(net).load_state_dict(state, assign=on_meta)
        except CheckpointMismatch as mismatch:
            from fastp2p.train.networks import options_saved_in
            saved = options_saved_in(state)
            if saved is None:
                raise ValueError(f"{path}: {mismatch}") from None
            if saved.which != which:  # no model option loads the other network in its place
                raise ValueError(f"{path} holds a {saved.kind}, not a {_ROLES[which]} (a "
                                 f"{NETWORK_SUFFIXES[saved.which]} file under another name?); "
                                 f"{self.advice}") from None
            if not fits_the_network_it_looks_like(state):  # no option value would load it
                raise ValueError(f"{path}: its entries agree on no one set of model options "
                                 f"(its first layers say {saved.options}, others differ): an "
                                 f"edited or damaged file; {self.advice}\n{mismatch.details}"
                                 ) from None
            raise ValueError(f"{path} was saved by other model options: pass {saved.options}, "
                             f"as it was trained with\n{mismatch.details}") from None
        return path

    def holds_networks_only(self, label) -> bool:
        """Whether ``label``'s set is networks without a training state or manifest: the
        reference implementation's checkpoints (its --continue_train loads the networks and
        starts fresh optimizers)."""
        return holds_networks_only(self.path, label)

    def load_train_state(self, label) -> dict:
        """The training state of ``label``'s set, after checking that the set is complete."""
        path = self.file(label, TRAIN_STATE_SUFFIX)
        manifest = self.manifest(label)
        if manifest is None:
            if not path.exists():
                network = self.file(label, NETWORK_SUFFIXES["G"])
                if network.exists() and not network.is_file():
                    raise ValueError(f"{network}: is a folder, not a network file; move it "
                                     "away, or resume another --epoch")
                raise ValueError(nothing_to_resume(self.path, label))
            state = load_safely(path, map_location="cpu")
        else:
            state = self._load_checked(label, TRAIN_STATE_SUFFIX, manifest)
        if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else None
            raise ValueError(f"{path} has training-state format {found!r} (an older fastp2p's); "
                             f"this fastp2p resumes format {TRAIN_STATE_FORMAT} only: finish "
                             "the run with the version that wrote it, or start again without "
                             "--continue_train")
        if manifest is None:
            raise ValueError(f"{path} has no manifest {self.file(label, MANIFEST_SUFFIX).name}, "
                             "so its set cannot be checked; resume from another --epoch or "
                             "start again without --continue_train")
        if state.get("generation") != manifest["generation"]:
            raise ValueError(f"{path} is of generation {state.get('generation')!r} but its "
                             f"manifest records generation {manifest['generation']}; resume "
                             "from another --epoch or start again without --continue_train")
        return state
