"""``fastp2p test``'s results folder RESULTS_DIR/NAME/PHASE_EPOCH: its planted links refused,
its lock held, an earlier run's page and scores.json removed before the first image
(``begin_results``), what a run that fails leaves in it, the files in its images/ a run did not
write, and where the trackers write (the run folder, or this one where that cannot be written).
"""
import contextlib
import os
import sys
from pathlib import Path

IMAGES = "images"  # RESULTS_DIR/NAME/PHASE_EPOCH/images: the translated triplets


def refuse_linked_results(out_dir: Path) -> None:
    """NotAPlainFile (a ValueError) if a folder the results are written into
    (``RESULTS_DIR/NAME``, ``PHASE_EPOCH``, its ``images``) is a symbolic link another user
    made (your own are followed)."""
    from fastp2p.atomic_files import refuse_linked_folder

    refuse_linked_folder(out_dir.parent, advice="remove it, or pick another --results_dir")
    for folder in (out_dir, out_dir / IMAGES):
        refuse_linked_folder(folder)


def lock_results(out_dir: Path, resources: contextlib.ExitStack) -> None:
    """Hold ``out_dir``'s lock (``.lock``, as a training run holds its run folder's) until
    ``resources`` closes, so that a second run into the same results folder stops at once
    (RunFolderBusy) instead of both writing images/ and each its own page over the other's."""
    from fastp2p.train.run_lock import RunFolderLock

    lock = RunFolderLock(out_dir, command="fastp2p test", option="--results_dir")
    warning = lock.acquire()
    resources.callback(lock.release)
    if warning:
        print(warning, file=sys.stderr)


def begin_results(out_dir: Path) -> Path:
    """Make ``out_dir/images`` (returned) for a run's images: refuse linked folders, remove
    temporary files of killed runs, and remove the page of an earlier run, which would
    otherwise list this run's images beside its own while this one runs, or for good if it
    stops early, and its scores.json, which a run that fails would leave as its own."""
    from fastp2p.atomic_files import remove_left_by_dead_processes
    from fastp2p.train.score_file import SCORES_FILE

    page = out_dir / "index.html"
    if page.is_dir() and not page.is_symlink():   # unlink would say a bare "Is a directory"
        raise ValueError(f"{page}: is a folder, where a file is written; move it away")
    images_dir = out_dir / IMAGES
    images_dir.mkdir(parents=True, exist_ok=True)
    # again once made: a link planted since the set-up's check (refuse_linked_results), before
    # mkdir made these folders, is refused before any image is written through it
    refuse_linked_results(out_dir)
    for folder in (out_dir, images_dir):
        remove_left_by_dead_processes(folder)
    page.unlink(missing_ok=True)
    (out_dir / SCORES_FILE).unlink(missing_ok=True)   # nor are its scores left as this run's
    return images_dir


def partial_results(out_dir: Path, written: str = "") -> str:
    """What an error or a second stop request leaves: images (``written``: how many, when
    known) and no page."""
    return f"the results in {out_dir} are partial ({written}no index.html)"


def count_not_written(images_dir: Path, sections) -> int:
    """How many entries of ``images_dir`` are none of the files ``sections`` lists: an earlier
    run's, which a run with fewer images or other names leaves beside its own. Said, not
    deleted: they may be all that is left of that run."""
    written = {Path(path).name for _, images in sections for _, path in images}
    with os.scandir(images_dir) as entries:
        return sum(entry.name not in written for entry in entries)


def tracker_folder(args, out_dir: Path) -> Path:
    """Where --tensorboard / --use_wandb write: the run's folder CHECKPOINTS_DIR/NAME, as in
    training (``tensorboard/test`` beside ``tensorboard/train``, so one TensorBoard shows both;
    W&B's ``wandb/``). When that cannot be written (a read-only copy of a trained model), or
    when it or a tracker folder in it is a symbolic link another user made (testing a
    colleague's model through their link: nothing is written through it), the results folder
    ``out_dir``, said in one line."""
    run_folder = Path(args.checkpoints_dir) / args.name
    if not (args.tensorboard or args.use_wandb):
        return run_folder
    import tempfile

    from fastp2p.atomic_files import NotAPlainFile, refuse_linked_folder
    from fastp2p.train.checkpoints import describe_os_error
    from fastp2p.train.trackers import TENSORBOARD, WANDB, refuse_linked_tracker_folders

    try:
        refuse_linked_folder(run_folder)
        refuse_linked_tracker_folders(args, run_folder, "test")
    except NotAPlainFile as err:
        print(f"note: the trackers do not write in {run_folder} ({err}); they write under "
              f"{out_dir} instead")
        return out_dir
    probe = run_folder / TENSORBOARD / "test" if args.tensorboard else run_folder / WANDB
    try:
        probe.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        print(f"note: the trackers cannot write in {run_folder} ({describe_os_error(err)}); "
              f"they write under {out_dir} instead")
        return out_dir
    return run_folder
