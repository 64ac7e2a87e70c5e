"""Symbolic links planted where the trackers write, at a run folder itself, and in the results
folder of `fastp2p test`: none redirects a write (tests/test_planted_links.py has the lock, the
loss log, the pages and web/).

Another user's link is made by running as another uid than the link's owner (os.geteuid
patched): tests cannot make a link owned by someone else without root. The tracker packages
are stand-ins that make their folder and write a file in it, as the real ones do, so nothing
here needs tensorboard or wandb installed.
"""
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from fastp2p.atomic_files import NotAPlainFile
from fastp2p.cli import main
from fastp2p.train.run_lock import RunFolderLock
from helpers.train_helpers import (folder_files, one_line, tiny_test_argv, train_argv,
                                   train_tiny_run, write_aligned_dataset)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    return train_tiny_run(data, tmp_path_factory.mktemp("trained"))


@pytest.fixture
def checkpoints(trained, tmp_path):
    """A copy of the trained run "tiny" per test (the tests plant links in it)."""
    return shutil.copytree(trained, tmp_path / "ck")


@pytest.fixture
def elsewhere(tmp_path):
    """The folder a planted link points at: someone's own files, which must stay as they are."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "theirs.txt").write_text("their own file\n")
    return folder


@pytest.fixture
def trackers(monkeypatch):
    """Stand-ins for torch.utils.tensorboard and wandb; returns the folders they wrote in."""
    written = []

    def write_in(folder):
        os.makedirs(folder, exist_ok=True)   # as both packages do: following links
        Path(folder, "events.stand-in").write_text("events")
        written.append(str(folder))

    class SummaryWriter:
        def __init__(self, log_dir):
            write_in(log_dir)

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
        write_in(os.path.join(kwargs["dir"], "wandb"))
        return Run()

    tensorboard = types.ModuleType("torch.utils.tensorboard")
    tensorboard.SummaryWriter = SummaryWriter
    wandb = types.ModuleType("wandb")
    wandb.init, wandb.Image = init, (lambda array, caption=None: None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tensorboard)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    return written


def _plant(link, target):
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link


def _as_another_user(monkeypatch, link):
    """From now on this process runs as a user other than ``link``'s owner."""
    other = link.lstat().st_uid + 1
    monkeypatch.setattr(os, "geteuid", lambda: other)


def _train(data, checkpoints, *extra):
    return main(train_argv(data, checkpoints, "--n_epochs_decay", "0", *extra))


def _refusal(capsys, link, *words):
    line = one_line(capsys.readouterr().err)
    assert all(word in line for word in (str(link), "is a symbolic link", "not a folder",
                                         *words)), line
    return line


TRACKER_LINKS = [("--tensorboard", "tensorboard"), ("--tensorboard", "tensorboard/{job}"),
                 ("--use_wandb", "wandb")]


@pytest.mark.parametrize("flag,linked", TRACKER_LINKS)
def test_train_refuses_a_linked_tracker_folder_before_it_changes_anything(
        data, tmp_path, elsewhere, trackers, capsys, flag, linked):
    run = tmp_path / "ck" / "tiny"
    link = _plant(run / linked.format(job="train"), elsewhere)
    assert _train(data, tmp_path / "ck", flag) == 1
    _refusal(capsys, link, "remove it")
    assert trackers == [] and folder_files(elsewhere) == {"theirs.txt": b"their own file\n"}
    assert not (run / "train_opt.txt").exists() and not (run / "loss_log.csv").exists()


@pytest.mark.parametrize("flag,linked", TRACKER_LINKS)
def test_test_refuses_a_linked_tracker_folder_of_the_run(data, checkpoints, tmp_path, elsewhere,
                                                         trackers, capsys, flag, linked):
    link = _plant(checkpoints / "tiny" / linked.format(job="test"), elsewhere)
    results = tmp_path / "results"
    assert main(tiny_test_argv(data, checkpoints, results, "--num_test", "1", flag)) == 1
    _refusal(capsys, link)
    assert trackers == [] and folder_files(elsewhere) == {"theirs.txt": b"their own file\n"}
    assert not results.exists()


def test_train_refuses_a_run_folder_another_user_linked(data, tmp_path, elsewhere, monkeypatch,
                                                        capsys):
    link = _plant(tmp_path / "ck" / "tiny", elsewhere)
    _as_another_user(monkeypatch, link)
    assert _train(data, tmp_path / "ck") == 1
    _refusal(capsys, link, f"made by another user (uid {link.lstat().st_uid})",
             "pick another --name")
    assert os.listdir(elsewhere) == ["theirs.txt"]   # not even the lock
    assert link.is_symlink()


def test_a_run_folder_linked_while_the_lock_makes_it_is_refused(tmp_path, elsewhere,
                                                                monkeypatch):
    """The folder is checked again after mkdir: a link planted between the first check and
    mkdir would otherwise be taken for the folder just made."""
    run = tmp_path / "ck" / "tiny"
    make_folder = Path.mkdir

    def planting_mkdir(self, *args, **kwargs):
        if self == run and not run.is_symlink():
            _plant(run, elsewhere)
            _as_another_user(monkeypatch, run)
        return make_folder(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", planting_mkdir)
    lock = RunFolderLock(run)
    with pytest.raises(NotAPlainFile, match="made by another user"):
        lock.acquire()
    lock.release()
    assert os.listdir(elsewhere) == ["theirs.txt"]


def test_a_run_folder_that_is_your_own_link_is_followed(data, tmp_path, elsewhere, capsys):
    """A user may keep a run on another disk with a link of their own: it trains there."""
    _plant(tmp_path / "ck" / "tiny", elsewhere)
    assert _train(data, tmp_path / "ck") == 0, capsys.readouterr().err
    assert (elsewhere / "latest_net_G.pth").is_file() and (elsewhere / "web/index.html").is_file()


def test_a_linked_checkpoints_folder_is_followed(data, tmp_path, elsewhere, monkeypatch, capsys):
    """--checkpoints_dir is the user's to name, a link included (whoever made it)."""
    link = _plant(tmp_path / "ck", elsewhere)
    _as_another_user(monkeypatch, link)
    assert _train(data, link) == 0, capsys.readouterr().err
    assert (elsewhere / "tiny" / "latest_net_G.pth").is_file()


@pytest.mark.parametrize("linked,another_users", [
    ("tiny", True), ("tiny/test_latest", False), ("tiny/test_latest/images", False),
    ("tiny/test_latest/images", True)])
def test_test_refuses_a_linked_results_folder_before_it_writes(
        data, checkpoints, tmp_path, elsewhere, monkeypatch, capsys, linked, another_users):
    results = tmp_path / "results"
    link = _plant(results / linked, elsewhere)
    if another_users:
        _as_another_user(monkeypatch, link)
    assert main(tiny_test_argv(data, checkpoints, results, "--num_test", "1")) == 1
    line = _refusal(capsys, link)
    assert ("pick another --results_dir" in line) == (linked == "tiny")
    assert folder_files(elsewhere) == {"theirs.txt": b"their own file\n"}


def test_a_results_folder_linked_while_test_makes_it_is_refused(data, checkpoints, tmp_path,
                                                                elsewhere, monkeypatch, capsys):
    results = tmp_path / "results"
    make_folder = Path.mkdir

    def planting_mkdir(self, *args, **kwargs):
        if self == results / "tiny" and not self.is_symlink():
            _plant(self, elsewhere)
            _as_another_user(monkeypatch, self)
        return make_folder(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", planting_mkdir)
    assert main(tiny_test_argv(data, checkpoints, results, "--num_test", "1")) == 1
    _refusal(capsys, results / "tiny", "made by another user")
    assert folder_files(elsewhere) == {"theirs.txt": b"their own file\n"}   # no image


def test_test_follows_your_own_linked_results_folder(data, checkpoints, tmp_path, elsewhere,
                                                     capsys):
    _plant(tmp_path / "results" / "tiny", elsewhere)
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test", "1")) == 0
    assert (elsewhere / "test_latest" / "index.html").is_file(), capsys.readouterr().err
