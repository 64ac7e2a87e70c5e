"""Stand-ins for torch.utils.tensorboard and wandb (CI installs neither): each records the folder
it is given and, as the real packages do, makes it (following links) and writes a file there."""
import os
import sys
import types
from pathlib import Path

EVENTS = "events.stand-in"


class TrackerFolders:
    """What the stand-ins were given: ``tensorboard`` (SummaryWriter's log_dir), ``wandb``
    (wandb.init's dir); ``written`` lists the folders they wrote a file in."""

    def __init__(self):
        self.tensorboard, self.wandb, self.written = [], [], []

    def write_in(self, folder) -> None:
        os.makedirs(folder, exist_ok=True)
        Path(folder, EVENTS).write_text("events")
        self.written.append(str(folder))


def install_tracker_stand_ins(monkeypatch) -> TrackerFolders:
    folders = TrackerFolders()

    class SummaryWriter:
        def __init__(self, log_dir):
            folders.tensorboard.append(str(log_dir))
            folders.write_in(log_dir)

        def add_scalar(self, *args):
            pass

        def add_image(self, *args, **kwargs):
            pass

        def close(self):
            pass

    class Run:
        def log(self, values, step=None):
            pass

        def finish(self):
            pass

    def init(**kwargs):
        folders.wandb.append(str(kwargs["dir"]))
        folders.write_in(os.path.join(kwargs["dir"], "wandb"))
        return Run()

    tensorboard = types.ModuleType("torch.utils.tensorboard")
    tensorboard.SummaryWriter = SummaryWriter
    wandb = types.ModuleType("wandb")
    wandb.init, wandb.Image = init, (lambda array, caption=None: None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tensorboard)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    return folders
