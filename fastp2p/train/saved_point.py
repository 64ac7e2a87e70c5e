"""Where in its run the generator ``fastp2p test`` loaded was saved (the step and the epoch,
as its manifest and training state record them), and whether that run is training now: the
end line's words and scores.json's record of them.
"""
import os
import stat
from dataclasses import asdict, dataclass

from fastp2p.train.position import epoch_reached


def weights_state_of(args, saved) -> "WeightsState":
    """The point of the run the generator loaded (``saved``: translate_command's
    ``_saved_generator``'s) was saved at, as the manifest it was loaded by (the step; not one
    read later, which a save since would have replaced) and its training state (the epoch)
    record it (none for the reference's files or --model_suffix's file of another tool), and
    whether a training holds the run's lock now (latest_* may have moved on since)."""
    from fastp2p.train.run_lock import held_now

    folder, _, manifest = saved
    return WeightsState(_saved_at(folder, args.epoch, manifest), held_now(folder.path))


@dataclass
class _SavedPoint:
    """Where in its run a checkpoint was saved: at ``step``, in (or, ``epoch_complete``, at
    the end of) ``epoch``; both None where its training state does not say."""
    step: int
    epoch: int | None = None
    epoch_complete: bool | None = None

    def words(self) -> str:
        """"after epoch 3, step 120", "in epoch 4, step 130" or "step 130"."""
        if self.epoch is None:
            return f"step {self.step}"
        return f"{'after' if self.epoch_complete else 'in'} epoch {self.epoch}, step {self.step}"


@dataclass
class WeightsState:
    """``weights_state_of``'s: ``saved_at`` (a _SavedPoint, None where unknown) and whether its
    run is training (``run_training``)."""
    saved_at: _SavedPoint | None
    run_training: bool

    def words(self) -> str:
        """" (after epoch 3, step 120; its run is still training)", or "" where nothing is
        known: the end line's."""
        said = [self.saved_at.words()] if self.saved_at else []
        if self.run_training:
            said.append("its run is still training")
        return f" ({'; '.join(said)})" if said else ""

    def record(self) -> dict:
        """The same for scores.json (``fastp2p.train.score_file``)."""
        saved_at = None if self.saved_at is None else asdict(self.saved_at)
        return {"saved_at": saved_at, "run_training": self.run_training}


def _saved_at(folder, label, manifest: dict | None) -> _SavedPoint | None:
    """Where in its run ``folder``'s set ``label`` was saved: ``manifest``'s step, and the
    epoch as its training state records it, where it says (not one of another save, whose
    rename is pending or which came since; a regular file; readable): its small records only
    are read (memory-mapped, weights only: the optimizers' tensors, most of the file, are
    never read; not checked against the manifest's SHA-256, which would read it all); None
    without a manifest."""
    import warnings

    import torch

    from fastp2p.checkpoint_names import TRAIN_STATE_SUFFIX

    if manifest is None:
        return None
    step_only = _SavedPoint(manifest["step"])
    path = folder.file(label, TRAIN_STATE_SUFFIX)
    # Any error: the state only names the epoch, and a damaged file raises nearly anything
    # (a flipped byte: AttributeError from torch's own load); weights_only runs none of its
    # code. Its warnings (a damaged zip's) are not the test's either.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a link is not followed out of the run folder, nor a FIFO opened (it would block)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return step_only
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        progress = state["progress"] if state["generation"] == manifest["generation"] else {}
        epoch, batches = progress["epoch"], progress["epoch_batches"]
        complete = progress["epoch_complete"]
    except Exception:
        return step_only
    if not (type(epoch) is int and type(batches) is int and type(complete) is bool):
        return step_only
    return _SavedPoint(step_only.step, *epoch_reached(epoch, batches, complete))
