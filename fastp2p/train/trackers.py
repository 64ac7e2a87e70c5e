"""Optional experiment trackers, beside loss_log.csv and the HTML page (which always stay).

``--tensorboard`` writes TensorBoard event files with ``torch.utils.tensorboard`` (needs the
``tensorboard`` package); ``--use_wandb`` (the reference implementation's option) logs to
Weights & Biases (needs the ``wandb`` package; ``WANDB_MODE=offline`` logs without an account,
into the run's folder, for ``wandb sync`` later). A tracker that is asked for but not installed
is a one-line error before anything runs, never a silent no-op.

Their packages make the folders they write into (following symbolic links), so a link planted
at one of them in a shared run folder (``tensorboard/``, ``tensorboard/JOB``, ``wandb/``) is
refused before they open, in one line, as a linked ``web/`` is
(``refuse_linked_tracker_folders``).

This module is imported to build ``--help``: it imports torch and the trackers' packages only
when a tracker is used. A tracker has ``log_scalars(step, {name: float})``,
``log_images(step, {label: image})`` (C x H x W tensors in [-1, 1], as the networks see them)
and ``close()``.
"""
import argparse
from pathlib import Path

from fastp2p.atomic_files import refuse_linked_folder

TENSORBOARD = "tensorboard"  # --tensorboard's events: FOLDER/tensorboard/JOB
WANDB = "wandb"              # wandb.init(dir=FOLDER) writes into FOLDER/wandb


class TrackerUnavailable(ValueError):
    """A tracker was asked for but its package is not installed."""


def add_tracker_arguments(parser: argparse.ArgumentParser, writes_anyway: str) -> None:
    """``writes_anyway``: what the command writes without a tracker, for the group's title."""
    group = parser.add_argument_group(f"trackers (besides {writes_anyway})")
    group.add_argument("--use_wandb", action="store_true",
                       help="log losses and images to Weights & Biases, as the reference does "
                            "(pip install wandb; WANDB_MODE=offline works without an account, "
                            "writing into CHECKPOINTS_DIR/NAME/wandb, for train and test alike)")
    group.add_argument("--wandb_project_name", default="CycleGAN-and-pix2pix",
                       help="W&B project of --use_wandb (default %(default)s, the reference's)")
    group.add_argument("--tensorboard", action="store_true",
                       help="also write TensorBoard events to CHECKPOINTS_DIR/NAME/tensorboard/"
                            "train (fastp2p train) or .../test (fastp2p test; under its results "
                            "folder if the checkpoints folder cannot be written), so "
                            "`tensorboard --logdir CHECKPOINTS_DIR/NAME/tensorboard` shows both "
                            "(pip install tensorboard)")


def check_trackers_installed(args: argparse.Namespace) -> None:
    """Raise TrackerUnavailable now (before any work) for a tracker whose package is missing."""
    if args.tensorboard:
        _summary_writer_class()
    if args.use_wandb:
        _wandb_module()


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch raises this when the tensorboard package is missing
        raise TrackerUnavailable(f"--tensorboard needs the tensorboard package: pip install "
                                 f"tensorboard ({err})") from None
    return SummaryWriter


def _wandb_module():
    try:
        import wandb
    except ImportError:
        raise TrackerUnavailable("--use_wandb needs the wandb package: pip install wandb "
                                 "(or drop --use_wandb)") from None
    return wandb


def refuse_linked_tracker_folders(args: argparse.Namespace, folder: Path, job: str) -> None:
    """``fastp2p.atomic_files.NotAPlainFile`` (a ValueError) if a folder the trackers asked for
    in ``args`` write into under ``folder`` is a symbolic link another user made (yours are
    followed): a command calls this before it changes anything, and ``open_trackers`` again."""
    folder = Path(folder)
    made = []
    if args.tensorboard:
        made += [folder / TENSORBOARD, folder / TENSORBOARD / job]
    if args.use_wandb:
        made.append(folder / WANDB)
    for tracker_folder in made:
        refuse_linked_folder(tracker_folder)


def open_trackers(args: argparse.Namespace, folder: Path, job: str) -> list:
    """The trackers asked for in ``args``, writing under ``folder`` (the run's folder); raises
    NotAPlainFile, before any is opened, for a folder of theirs that is a symbolic link."""
    refuse_linked_tracker_folders(args, folder, job)
    trackers = []
    try:
        if args.tensorboard:
            trackers.append(TensorBoardTracker(Path(folder) / TENSORBOARD / job))
        if args.use_wandb:
            config = {key: value for key, value in vars(args).items() if key != "run"}
            trackers.append(WandbTracker(args.wandb_project_name, args.name, job, config,
                                         Path(folder)))
    except Exception:
        close_trackers(trackers)
        raise
    return trackers


def close_trackers(trackers) -> None:
    for tracker in trackers:
        tracker.close()


class TensorBoardTracker:
    def __init__(self, log_dir: Path):
        self.writer = _summary_writer_class()(log_dir=str(log_dir))

    def log_scalars(self, step: int, values: dict) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def log_images(self, step: int, images: dict) -> None:
        from fastp2p.train.sample_images import tensor_to_image
        for label, image in images.items():
            self.writer.add_image(label, tensor_to_image(image), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, project: str, name: str, job: str, config: dict, folder: Path):
        self.wandb = _wandb_module()
        folder.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(project=project, name=name, job_type=job, config=config,
                              dir=str(folder))

    def log_scalars(self, step: int, values: dict) -> None:
        self.run.log(dict(values), step=step)

    def log_images(self, step: int, images: dict) -> None:
        from fastp2p.train.sample_images import tensor_to_image
        self.run.log({label: self.wandb.Image(tensor_to_image(image), caption=label)
                      for label, image in images.items()}, step=step)

    def close(self) -> None:
        self.run.finish()
