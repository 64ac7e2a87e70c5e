"""What train and test refuse before loading torch (seconds): a --netG fastp2p lacks, and a
--dataroot that is no folder. Each was said only after the import, 6-8 s for a typo."""
import argparse

from fastp2p.command_errors import print_error
from fastp2p.data.dataroot_checks import refuse_dataroot_options
from fastp2p.data.errors import DataError
from fastp2p.train.unet_names import unet_levels


def refused_at_once(args: argparse.Namespace, command: str, context=()) -> int | None:
    """The exit code of a command line refused here, its one line printed after the
    ``context`` lines (``print_error``'s): 2 for --netG (an option refused), 1 for --dataroot
    (as the dataset's other errors); None if neither is."""
    try:
        if isinstance(args.netG, str):  # not a QuickDefault (a default, always a U-Net)
            unet_levels(args.netG)
    except ValueError as err:
        print_error(command, err, context)
        return 2
    try:
        refuse_dataroot_options(args)
    except DataError as err:
        print_error(command, err, context)
        return 1
    return None
