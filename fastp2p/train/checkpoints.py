"""Checkpoints in the reference layout, written atomically.

``CHECKPOINTS/NAME/{label}_net_G.pth`` and ``{label}_net_D.pth`` are plain state_dicts of the
unwrapped networks on the CPU (the reference implementation loads them as they are);
``{label}_train_state.pth`` holds everything else a bit-exact resume needs. ``label`` is
``latest`` or an epoch number. Every file of a save goes to a temporary file in the same folder,
is fsynced, and only when all of them are complete are they renamed over the old ones: a crash,
a full disk or a permission error leaves the previous checkpoint as it was.
"""
import os
from pathlib import Path

import torch

from fastp2p.data.atomic_files import fsync_directory, temporary_sibling
from fastp2p.train.engine import unwrap

NETWORK_SUFFIXES = {"G": "net_G.pth", "D": "net_D.pth"}
TRAIN_STATE_SUFFIX = "train_state.pth"
TRAIN_STATE_FORMAT = 1


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed; the previous checkpoint files are unchanged."""


def atomic_save(objects: dict) -> None:
    """``torch.save`` each value to its path key; all files appear together or none changes."""
    written = []
    try:
        for path, obj in objects.items():
            path = Path(path)
            temp = temporary_sibling(path)
            written.append((temp, path))
            with open(temp, "wb") as handle:
                torch.save(obj, handle)
                handle.flush()
                os.fsync(handle.fileno())
        # renamed only once every file is complete: a failure above changes nothing
        for temp, path in written:
            os.replace(temp, path)
    except (OSError, RuntimeError) as err:
        for temp, _ in written:
            temp.unlink(missing_ok=True)
        raise CheckpointWriteError(
            f"could not write {written[-1][1] if written else 'the checkpoint'}: {err}. The "
            "previous checkpoint files are unchanged; free disk space or fix the folder's "
            "permissions, then resume with --continue_train") from err
    for folder in {path.parent for _, path in written}:
        fsync_directory(folder)


def network_state(net: torch.nn.Module) -> dict:
    """The state_dict the reference saves: unwrapped, on the CPU, contiguous."""
    return {key: value.detach().cpu().contiguous() for key, value in
            unwrap(net).state_dict().items()}


class CheckpointFolder:
    """``checkpoints_dir/name``: where a run's networks and training state live."""

    def __init__(self, checkpoints_dir, name):
        self.path = Path(checkpoints_dir) / name

    def file(self, label, suffix) -> Path:
        return self.path / f"{label}_{suffix}"

    def save(self, labels, netG, netD, train_state: dict) -> None:
        """Write G, D and the training state under every label (e.g. ["latest", "5"])."""
        self.path.mkdir(parents=True, exist_ok=True)
        G, D = network_state(netG), network_state(netD)
        objects = {}
        for label in labels:
            objects[self.file(label, NETWORK_SUFFIXES["G"])] = G
            objects[self.file(label, NETWORK_SUFFIXES["D"])] = D
            objects[self.file(label, TRAIN_STATE_SUFFIX)] = {"format": TRAIN_STATE_FORMAT,
                                                             **train_state}
        atomic_save(objects)

    def load_network(self, net: torch.nn.Module, label, which: str) -> Path:
        path = self.file(label, NETWORK_SUFFIXES[which])
        if not path.exists():
            raise ValueError(f"no checkpoint {path}: train first (fastp2p train --name "
                             f"{self.path.name}) or pick an existing --epoch")
        unwrap(net).load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return path

    def load_train_state(self, label) -> dict:
        path = self.file(label, TRAIN_STATE_SUFFIX)
        if not path.exists():
            raise ValueError(f"no training state {path} to resume from; start without "
                             "--continue_train, or pick the --epoch that was saved")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("format") != TRAIN_STATE_FORMAT:
            raise ValueError(f"{path} has training-state format {state.get('format')!r}; this "
                             f"fastp2p reads format {TRAIN_STATE_FORMAT}")
        return state
