"""``fastp2p train --continue_train``'s side of a run: whether CHECKPOINTS_DIR/NAME holds a
checkpoint to resume (or a run a fresh one must not restart), that checkpoint loaded and checked
before anything of the run is written, and the lines on what a resumed run goes on from.

Apart from ``train_command`` because resuming has rules of its own (the reference's
networks-only checkpoints, a generator alone, an older fastp2p's state or options file) that
the command's steps only call; ``train_command`` keeps those steps' order, the lines that refuse
a run and the exit codes.
"""
import os
from pathlib import Path


def holds_checkpoint(folder: Path, label: str) -> bool:
    """Whether ``folder`` holds checkpoint ``label`` to resume: its manifest (a fastp2p set) or
    its generator (the reference's networks)."""
    from fastp2p.checkpoint_names import MANIFEST_SUFFIX, NETWORK_SUFFIXES
    return any((folder / f"{label}_{suffix}").exists()
               for suffix in (MANIFEST_SUFFIX, NETWORK_SUFFIXES["G"]))


def check_something_to_resume(folder: Path, label: str) -> None:
    """ValueError (``nothing_to_resume``) where --continue_train finds no file of checkpoint
    ``label`` in ``folder``: no manifest, training state or generator, each of which
    ``load_resume_point`` would go on to read (or say what is wrong with). Torch-free, so that
    train says it before torch loads (seconds, for a mistyped --name or --epoch)."""
    from fastp2p.checkpoint_names import TRAIN_STATE_SUFFIX, nothing_to_resume
    state = folder / f"{label}_{TRAIN_STATE_SUFFIX}"
    if not holds_checkpoint(folder, label) and not state.exists():
        raise ValueError(nothing_to_resume(folder, label))


def check_fresh_run(args) -> None:
    """A run without --continue_train must not silently restart another run's folder: its
    latest_* would be replaced at the first save (a folder of no checkpoint holds no run to
    lose: LossLog keeps the log of one that saved none, TrainingPage its samples)."""
    from fastp2p.checkpoint_names import MANIFEST_SUFFIX, NETWORK_SUFFIXES
    folder = Path(args.checkpoints_dir) / args.name
    if args.continue_train and args.overwrite:
        raise ValueError(f"--continue_train resumes the run in {folder} and --overwrite starts "
                         "a new one there: keep one of them")
    if args.continue_train or args.overwrite or not folder.is_dir():
        return
    saved = sorted(path.name for suffix in (MANIFEST_SUFFIX, NETWORK_SUFFIXES["G"])
                   for path in folder.glob(f"*_{suffix}"))
    if saved:
        shown = ", ".join(saved[:3]) + (f" and {len(saved) - 3} more" if len(saved) > 3 else "")
        raise ValueError(f"{folder} already holds a run ({shown}): resume it with "
                         "--continue_train, pick another --name, or remove that folder (or "
                         "pass --overwrite to start again in it)")


def load_resume_point(args, checkpoints, netG, netD, say):
    """(the training state to resume or None, its path); with --continue_train the networks
    are loaded into ``netG`` and ``netD``."""
    from fastp2p.train.checkpoints import TRAIN_STATE_SUFFIX

    state = None
    state_path = checkpoints.file(args.epoch, TRAIN_STATE_SUFFIX)
    if args.continue_train:
        if checkpoints.holds_networks_only(args.epoch):
            _refuse_generator_alone(checkpoints, args.epoch)
            say(_networks_only_notice(checkpoints, args))
        else:
            # the training state first: an older fastp2p's file is reported as such
            state = checkpoints.load_train_state(args.epoch)
            _refuse_unknown_train_state(state, state_path)
        checkpoints.load_network(netG, args.epoch, "G")
        checkpoints.load_network(netD, args.epoch, "D")
    return state, state_path


def _refuse_generator_alone(checkpoints, label) -> None:
    """ValueError where networks saved without a training state are a generator alone (a
    downloaded pretrained model): training goes on from G and D both, and no option of fastp2p
    starts a run from a generator alone."""
    from fastp2p.checkpoint_names import NETWORK_SUFFIXES
    discriminator = checkpoints.file(label, NETWORK_SUFFIXES["D"])
    if not discriminator.exists():
        raise ValueError(f"--continue_train: {discriminator} is missing: {label}_net_G.pth there "
                         "is a generator alone (no discriminator, no training state), which "
                         "training cannot go on from; put the _net_D.pth saved with it there, or "
                         "train from scratch under another --name (no option starts training "
                         "from a generator alone)")


def _networks_only_notice(checkpoints, args) -> str:
    """What --continue_train does with networks saved without a training state (the reference
    implementation's checkpoints): what its own --continue_train does."""
    return (f"--continue_train: {checkpoints.path}/{args.epoch}_net_G.pth and _net_D.pth have no "
            "training state (the reference implementation's checkpoints): loading the networks "
            f"and starting fresh optimizers and lr schedule at --epoch_count {args.epoch_count}, "
            "as the reference does; not restored: Adam's moments, the position in the epoch and "
            "the RNG states")


def _refuse_unknown_train_state(state, path) -> None:
    """ValueError, before anything of the run is written or changed, if ``state`` is not one
    ``Trainer.train_state()`` wrote (a file crafted with a manifest to match passes the
    manifest's checksums)."""
    from fastp2p.train.checkpoints import RESUME_ADVICE
    from fastp2p.train.train_state_check import train_state_problem
    problem = train_state_problem(state)
    if problem:
        raise ValueError(f"{path}: not a fastp2p training state ({problem}); {RESUME_ADVICE}")


def check_dataroot_from_here(from_here, saved, pairs: int) -> None:
    """ResumeError where ``from_here``'s relative --dataroot (a ``DatarootFromHere``) was read
    from the current folder only because the run's options file does not say where the run
    started (said with the reason, cut short or older, that ``from_here`` gives), and holds
    another number of ``pairs`` than the training state's progress (``saved``) records the run
    trained on: most likely another dataset of the same name, which the run would go on with (a
    state that does not record the count, an older fastp2p's, cannot tell: the taken-options
    line warns)."""
    from fastp2p.train.trainer import ResumeError
    if saved.dataset_pairs in (None, pairs):
        return
    dataroot, why = from_here
    raise ResumeError(
        f"--dataroot {dataroot}, taken from the run's options file and read from the current "
        f"folder as {os.path.abspath(dataroot)}, holds {pairs} pairs, and the run trained on "
        f"{saved.dataset_pairs}: the file does not record the folder the run was started in "
        f"({why}), so this is likely another dataset of that name; give --dataroot the run's "
        "dataset (or this one, to train on it)")


def say_resumed(args, trainer, pairs: int, say) -> bool:
    """The lines on what a resumed run goes on from; False when it has no epoch left (the
    options it changed are then said as not applied)."""
    from fastp2p.train.saved_options import OPTIONS_FILE, resume_changes_line

    say(f"resumed {trainer.checkpoints.path} at epoch {trainer.progress.epoch}, step "
        f"{trainer.engine.steps}")
    for note in (trainer.pairs_changed_note(pairs), trainer.total_batch_changed_note()):
        if note:
            say(note)
    if trainer.schedule.epoch_count != args.epoch_count:
        say(f"--continue_train: the lr schedule counts its epochs from "
            f"{trainer.schedule.epoch_count}, as the run that saved it did (not from "
            f"--epoch_count {args.epoch_count})")
    if trainer.progress.epoch > trainer.last_epoch:
        say(f"{trainer.checkpoints.path} is done up to epoch {_epochs_done(trainer.progress)}, "
            f"and this run would end at epoch {trainer.last_epoch} (--n_epochs {args.n_epochs} "
            f"+ --n_epochs_decay {args.n_epochs_decay}): nothing to train, nothing changed; "
            "raise --n_epochs or --n_epochs_decay to train on")
        # what a resume that trains says of them, so that a changed option is not lost unsaid
        changes_line = resume_changes_line(args, trainer.checkpoints.path / OPTIONS_FILE,
                                           trains=False)
        if changes_line:
            say(changes_line)
        return False
    return True


def no_step_left(trainer, loader) -> bool:
    """Whether ``trainer``, resumed and let go on by ``say_resumed``, is at its last epoch with
    all of that epoch's batches in ``loader`` done (a run stopped right after its last step,
    before its end's save): it then saves that end and trains no step; where that end is the
    run's own, it applies none of the options the command line changes, as a resume with nothing
    to train (one ending the run there sooner applies them, as a resume that trains)."""
    progress = trainer.progress
    return progress.epoch == trainer.last_epoch and progress.epoch_batches >= len(loader)


def _epochs_done(progress) -> int:
    """The last epoch whose batches are all done: the saved one itself where a stop saved it
    at its last step (``epoch_complete``: its end not made yet), the one before it otherwise."""
    from fastp2p.train.position import epoch_reached
    epoch, ended = epoch_reached(progress.epoch, progress.epoch_batches, progress.epoch_complete)
    return epoch if ended else epoch - 1
