"""What makes ``--dataroot`` unusable whatever the dataset: given with ``--task``, a file, or no
folder. Imports neither torch nor numpy, so that train and test ask it before loading torch (a
mistyped folder's error took 6-8 s, nearly all of it the import); ``create_dataset`` asks it
too, for its other callers."""
import argparse
from pathlib import Path

from fastp2p.data.errors import DataError, shown_path

_POINT_IT = "point it at a dataset folder holding train/ (and val/, test/)"


def refuse_dataroot_options(args: argparse.Namespace) -> None:
    """DataError for ``--dataroot`` with ``--task``, or a ``--dataroot`` that is no folder."""
    refuse_task_with_dataroot(args)
    if args.dataroot:
        refuse_missing_folder(Path(args.dataroot))


def refuse_task_with_dataroot(args: argparse.Namespace) -> None:
    """DataError for ``--dataroot`` with ``--task``: options that contradict each other, which
    train and test refuse as such (exit code 2), before the folder is looked at."""
    task = getattr(args, "task", None)
    if args.dataroot and task:
        raise DataError(f"--task {task} chooses an embedded dataset, so it has no meaning with "
                        "--dataroot: drop one of them")


def refuse_missing_folder(root: Path) -> None:
    """DataError unless ``root`` (the dataset folder, given or embedded) is a folder."""
    if root.is_file():
        raise DataError(f"{shown_path(root)}: --dataroot is a file, not a folder; {_POINT_IT}")
    if not root.is_dir():
        raise DataError(f"{shown_path(root)}: --dataroot folder not found; {_POINT_IT}")
