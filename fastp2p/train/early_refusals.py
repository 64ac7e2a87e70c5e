"""What train and test refuse before loading torch (seconds): a --netG fastp2p lacks, --task
with --dataroot, and a --dataroot that is no folder. Each was said only after the import, 6-8 s
for a typo. Also the rule by which a torchrun job's processes say a refusal
(``print_once_per_node``), and the refusal of a job by a command that runs in one process
(``refused_under_torchrun``)."""
import argparse
import sys

from fastp2p.command_errors import error_line, rank_prefix, says_for_its_node
from fastp2p.data.dataroot_checks import refuse_dataroot_options, refuse_task_with_dataroot
from fastp2p.data.errors import DataError
from fastp2p.torchrun_variables import launched_world_size
from fastp2p.train.unet_names import unet_levels


def refused_at_once(args: argparse.Namespace, command: str, context=()) -> int | None:
    """The exit code of a command line refused here, its one line printed after the
    ``context`` lines (``print_once_per_node``): 2 for --netG or --task with --dataroot (options
    refused), 1 for a --dataroot that is no folder (as the dataset's other errors); None if
    neither is."""
    try:
        if isinstance(args.netG, str):  # not a QuickDefault (a default, always a U-Net)
            unet_levels(args.netG)
        refuse_task_with_dataroot(args)
    except ValueError as err:   # a DataError too
        print_once_per_node(command, err, context)
        return 2
    try:
        refuse_dataroot_options(args)
    except DataError as err:
        print_once_per_node(command, err, context)
        return 1
    return None


def refused_under_torchrun(command: str, refuse) -> int | None:
    """2 where ``refuse`` (``command``'s check of how many processes torchrun started, given
    their number: ValueError for a job it cannot run) refuses the job, its line said once per
    node (``print_once_per_node``: alike on every process); None where not. Asked first, before
    torch loads: a job's processes would otherwise each say any other error in its place."""
    try:
        refuse(launched_world_size())
    except ValueError as err:
        print_once_per_node(command, err)
        return 2
    return None


def print_once_per_node(command: str, message: object, context=()) -> None:
    """``message`` as ``command``'s error line, after the ``context`` lines, on stderr; under
    torchrun by the first process of each node alone (LOCAL_RANK 0), each line begun with
    ``rank N: `` off rank 0. Once per node, as a run is refused for its options (alike on every
    rank) or for what its node has (the packages installed, the GPUs and RAM, the files): alike
    on the ranks of a node, not across nodes. Said by rank 0 alone, a refusal that another node
    alone hit exited 2 without a word; said by every rank, one refusal came once per process.
    torchrun's variables are read without torch (maybe not imported yet)."""
    if not says_for_its_node():
        return
    print_on_this_rank(command, message, context)


def print_on_this_rank(command: str, message: object, context=()) -> None:
    """``message`` as ``command``'s error line, after the ``context`` lines, on stderr, each
    line begun with ``rank N: `` off rank 0: for a failure this process alone met (a bad image
    in its share of the data, its loader worker)."""
    for line in (*context, error_line(command, message)):
        print(rank_prefix() + line, file=sys.stderr)

