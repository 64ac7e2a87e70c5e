"""``fastp2p train``'s checks before torch loads, so that a mistake is said at once, not after
the seconds of torch's import: the packages the run needs, the options that must fit each
other, a fresh run into another run's folder, a missing training split or checkpoint to
resume. Each refusal is one line (``print_refusal``, which the command's later refusals use
too) and an exit code: 2 for options, 1 for missing inputs, EXIT_IN_USE for a split a
``fastp2p pack`` is writing.

Apart from ``train_command``, which keeps the order of these checks and the steps after torch
loads. Nothing here imports torch, at module level or in its functions.
"""
import argparse
import os
from pathlib import Path

from fastp2p.command_errors import EXIT_IN_USE
from fastp2p.train.options import resolve_quick_defaults
from fastp2p.train.resuming import check_fresh_run, check_something_to_resume
from fastp2p.train.saved_options import refuse_values_read_back_otherwise


def refuse_before_options(args, resume_notes) -> int | None:
    """The exit code of a run refused before its options are resolved (a missing package, a
    --netG or --dataroot refused at once, with no torch to load), after its one line; None
    when it may go on."""
    from fastp2p.optional_packages import MissingPackage, require_packages
    from fastp2p.train.early_refusals import refused_at_once

    try:
        require_packages(("PIL", "tqdm")
                         + (() if args.dataroot else ("skimage",))  # the embedded dataset
                         + (() if args.no_html else ("matplotlib",)),  # the page's loss plot
                         extra="train")
    except MissingPackage as err:
        print_refusal(err)
        return 2
    # a refused value may be one that --continue_train took: the line naming them comes first
    return refused_at_once(args, "train", resume_notes)  # a typo needs no torch: said at once


def resolve_and_check_options(args, resume_notes) -> int | None:
    """The quick defaults resolved, then the checks below in order, each refusal after its
    line: 2 for a --model or --gpu_ids fastp2p cannot honour (or a --device --gpu_ids
    contradicts), for a value train_opt.txt cannot record as it is, for options that
    do not fit each other, for a fresh run into a folder that holds one; 1 for --continue_train
    with no checkpoint to resume; 2 for networks without a training state to resume at an
    --epoch_count past the last epoch, for sizes the networks cannot take and CUDA-only options
    on the CPU; None when all pass. The checkpoint comes
    before the sizes, as ``fastp2p test`` says it: a mistyped --name has no train_opt.txt to
    take options from either, and the default unet_256 refused a --crop_size with advice that
    led only to the missing checkpoint."""
    resolve_quick_defaults(args)
    # (the fresh run's refusal is of the folder, not of options a resume took: said alone)
    for check, exit_code, context in ((_refuse_unsupported_values, 2, resume_notes),
                                      (refuse_values_read_back_otherwise, 2, resume_notes),
                                      (_check_option_pairs, 2, resume_notes),
                                      (_check_fresh_run, 2, ()),
                                      (_check_something_to_resume, 1, resume_notes),
                                      (_check_epoch_count_of_networks_alone, 2, resume_notes),
                                      (_check_sizes_and_device, 2, resume_notes)):
        try:
            check(args)
        except ValueError as err:
            print_refusal(err, context)
            return exit_code
    return None


def _refuse_unsupported_values(args) -> None:
    from fastp2p.train.reference_options import refuse_unsupported_values
    # --model cycle_gan, several --gpu_ids, --gpu_ids 0 with --device cpu
    refuse_unsupported_values(args, "train")


def _check_option_pairs(args) -> None:
    """Options that do not fit each other (single values are checked by argparse), whatever
    the run folder holds; a ValueError here exits with code 2, as argparse's errors do."""
    if args.resume_or_start and args.overwrite:
        raise ValueError("--resume_or_start keeps the run in CHECKPOINTS_DIR/NAME and "
                         "--overwrite starts a new one there: keep one of them")
    if not args.continue_train:   # a resume goes on from its state's epoch
        _refuse_epoch_count_past_the_end(args)
    if args.lr_policy == "cosine" and args.n_epochs < 1:
        raise ValueError("--lr_policy cosine anneals the lr over --n_epochs, which must be >= 1 "
                         f"(got {args.n_epochs})")


def _refuse_epoch_count_past_the_end(args) -> None:
    """ValueError where the first epoch, --epoch_count, is past the last one."""
    last_epoch = args.n_epochs + args.n_epochs_decay
    if args.epoch_count > last_epoch:
        raise ValueError(f"no epoch to train: --epoch_count {args.epoch_count} is past the last "
                         f"epoch, --n_epochs {args.n_epochs} + --n_epochs_decay "
                         f"{args.n_epochs_decay} = {last_epoch}; raise --n_epochs or "
                         "--n_epochs_decay, or lower --epoch_count")


def _check_epoch_count_of_networks_alone(args) -> None:
    """--continue_train of networks saved without a training state (the reference's
    checkpoints) starts at --epoch_count, as a fresh run does, so it is refused as one is past
    the last epoch (it trained nothing, yet started the run's loss log anew, rewrote its
    options file and named its checkpoints as saved). After ``_check_something_to_resume``."""
    from fastp2p.checkpoint_names import holds_networks_only
    from fastp2p.train.reference_options import checkpoint_label

    folder = _unlocked_run_folder(args) if args.continue_train else None
    if folder is not None and holds_networks_only(folder, checkpoint_label(args)):
        _refuse_epoch_count_past_the_end(args)


def _check_fresh_run(args) -> None:
    """``check_fresh_run`` (a fresh run into a folder that holds one; --continue_train with
    --overwrite), asked before torch loads (seconds, for the refusal a rerun of the same
    command meets) and asked again by ``train_command._claim_run_folder`` under the folder's
    lock; nothing to check where a lock file is: a run training in the folder is said as such
    by the claim."""
    folder = _unlocked_run_folder(args)
    if folder is not None:
        check_fresh_run(argparse.Namespace(**{**vars(args), "name": folder.name}))


def _check_something_to_resume(args) -> None:
    """``check_something_to_resume`` of --continue_train's run folder; nothing to check without
    --continue_train or where a lock file is there (a run training in the folder is said as
    such by the claim)."""
    from fastp2p.train.reference_options import checkpoint_label

    folder = _unlocked_run_folder(args) if args.continue_train else None
    if folder is not None:
        check_something_to_resume(folder, checkpoint_label(args))


def _check_sizes_and_device(args) -> None:
    """The image sizes the networks must take, and the CUDA-only options of an explicit
    --device cpu: checks that need neither the device nor torch, so run before torch loads."""
    from fastp2p.train.image_sizes import check_options_fit_unet, check_patchgan_fits_images

    check_options_fit_unet(args)
    check_patchgan_fits_images(args)
    if args.device == "cpu" and args.gpu_ids is None:   # (--gpu_ids may name a GPU instead)
        refuse_cuda_only_options(args, "cpu")


def refuse_cuda_only_options(args, device: str) -> None:
    """ValueError for an option only a CUDA run takes, on ``device`` (cpu, cuda:N, ...)."""
    if device.startswith("cuda"):
        return
    if args.precision != "fp32":
        raise ValueError(f"--precision {args.precision} (autocast, the CUDA fast path) needs a "
                         f"CUDA device, this run is on {device}; use --precision fp32")
    if args.graphs:
        raise ValueError(f"--graphs (cuda_graph) needs a CUDA device, this run is on {device}; "
                         "use --no-graphs")


def refuse_missing_inputs(args, resume_notes) -> int | None:
    """1 after its line where the training split is missing or holds no image: said before
    torch loads (seconds, for a mistyped --phase), as the dataset says it after (it reads the
    images); EXIT_IN_USE where a `fastp2p pack` is writing the split, as the dataset says it
    after; None when it is there."""
    from fastp2p.data.create import refuse_unreadable_split
    from fastp2p.data.folder_lock import PackFolderBusy

    try:
        refuse_unreadable_split(args, args.phase)
    except ValueError as err:   # a DataError too
        print_refusal(err, resume_notes)
        return EXIT_IN_USE if isinstance(err, PackFolderBusy) else 1
    return None


def _unlocked_run_folder(args) -> Path | None:
    """CHECKPOINTS_DIR/NAME as --suffix names it, for the checks before torch loads; None where
    a --suffix is refused (said as the reference options are applied) or a lock file is there
    (the claim says what holds the folder)."""
    from fastp2p.train.reference_options import run_name
    from fastp2p.train.run_lock import LOCK_NAME

    try:
        folder = Path(args.checkpoints_dir) / run_name(args)
    except ValueError:
        return None
    return None if os.path.lexists(folder / LOCK_NAME) else folder


def print_refusal(err, context=()) -> None:
    """The error line of a run refused (exit code 2: its options, a package they need, the
    device) or failed outside the training loop (exit code 1: its data, its folder), under
    torchrun once per node (``print_once_per_node``)."""
    from fastp2p.train.early_refusals import print_once_per_node
    print_once_per_node("train", err, context)
