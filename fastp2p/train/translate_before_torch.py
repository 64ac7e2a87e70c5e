"""``fastp2p test``'s checks before torch loads, so that a mistake is said at once, not after
the seconds of torch's import: a torchrun job of several processes, a --phase split that is
missing or being packed (looked at only where the checkpoint is there). Each refusal is one line
and an exit code (``refused``: 2, ``failed``: 1), which the command's later errors use too.

Apart from ``translate_command``, which keeps the order of these checks and the steps after
torch loads. Nothing here imports torch, but ``failed``'s disk advice for an OSError (none
arises before torch loads).
"""
from pathlib import Path

from fastp2p.command_errors import EXIT_IN_USE, print_error
from fastp2p.train.translate_data_notes import single_mode_hint


def refused_before_torch(args) -> int | None:
    """The exit code of a test refused before torch loads (seconds, for a mistyped --phase), as
    train refuses it, after its one line: 2 for --model options fastp2p cannot honour (said
    before the data, as train says them), 1 for a --phase split that is missing or holds no
    image, EXIT_IN_USE for one a ``fastp2p pack`` is writing; None when it may go on. The
    split is looked at only where the checkpoint is there (its manifest or generator's file): a
    missing checkpoint (a --name typo, a run not trained yet) is said first, as the load says
    it after torch loads."""
    from fastp2p.data.create import refuse_unreadable_split
    from fastp2p.data.errors import DataError
    from fastp2p.data.folder_lock import PackFolderBusy
    from fastp2p.train.reference_options import resolve_test_model

    try:
        resolve_test_model(args)   # (--dataset_mode single: no split to look at)
    except ValueError as err:
        return refused(err)
    if not _holds_the_checkpoint(args):
        return None
    try:
        refuse_unreadable_split(args, args.phase)
    except PackFolderBusy as err:
        print_error("test", err)
        return EXIT_IN_USE
    except ValueError as err:   # a DataError too; said as the dataset says it after torch loads
        return failed(DataError(f"{err}{single_mode_hint(args)}"))
    return None


def _holds_the_checkpoint(args) -> bool:
    """Whether the run folder holds the set of --epoch / --load_iter (its manifest or its
    generator's file, as a resume counts it), looked for without torch; False where --suffix is
    refused (said as the options are checked)."""
    from fastp2p.train.reference_options import checkpoint_label, run_name
    from fastp2p.train.resuming import holds_checkpoint

    try:
        folder = Path(args.checkpoints_dir) / run_name(args)
    except ValueError:
        return False
    return holds_checkpoint(folder, checkpoint_label(args))


def refuse_torchrun(processes: int) -> None:
    """Test translates in one process: under torchrun each of its processes would translate
    every image into the same files and page, so a job of several is refused."""
    if processes > 1:
        raise ValueError(f"fastp2p test translates in one process, on one device, but torchrun "
                         f"started {processes} (WORLD_SIZE={processes}), each of which would "
                         "translate every image into the same folder; run it without torchrun "
                         "(--device cuda:N or --gpu_ids N picks the GPU)")


def refused(err: Exception) -> int:
    """Say in one line why the options are refused, before anything ran; its exit code."""
    print_error("test", err)
    return 2


def failed(err: Exception) -> int:
    """Say in one line why the command failed (a full disk, a read-only results folder, a bad
    image or option); its exit code."""
    if isinstance(err, OSError):   # (imports torch: a refusal before it loads is no OSError)
        from fastp2p.train.checkpoints import described_with_disk_advice
        err = described_with_disk_advice(err)
    print_error("test", err)
    return 1
