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
from pathlib import Path

import pytest

from fastp2p.atomic_files import NotAPlainFile
from fastp2p.cli import main
from fastp2p.train.run_lock import RunFolderLock
from helpers.link_helpers import as_another_user
from helpers.tracker_stand_ins import EVENTS, install_tracker_stand_ins
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
    """Stand-ins for torch.utils.tensorboard and wandb; the folders they wrote in."""
    return install_tracker_stand_ins(monkeypatch).written


def _plant(link, target):
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link


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
        data, tmp_path, elsewhere, trackers, monkeypatch, capsys, flag, linked):
    run = tmp_path / "ck" / "tiny"
    link = _plant(run / linked.format(job="train"), elsewhere)
    as_another_user(monkeypatch, link)
    assert _train(data, tmp_path / "ck", flag) == 1
    _refusal(capsys, link, "made by another user", "remove it")
    assert trackers == [] and folder_files(elsewhere) == {"theirs.txt": b"their own file\n"}
    assert not (run / "train_opt.txt").exists() and not (run / "loss_log.csv").exists()


@pytest.mark.parametrize("flag,linked", TRACKER_LINKS + [("--tensorboard", "")])
def test_test_writes_no_tracker_file_through_another_users_link(
        data, checkpoints, tmp_path, elsewhere, trackers, monkeypatch, capsys, flag, linked):
    """A tracker folder of the run, or the run folder itself (a colleague's model tested
    through their link), that another user linked: the trackers write under the results."""
    run = checkpoints / "tiny"
    if linked:
        link = _plant(run / linked.format(job="test"), elsewhere)
    else:
        for path in run.iterdir():
            shutil.move(path, elsewhere)
        run.rmdir()
        link = _plant(run, elsewhere)
    as_another_user(monkeypatch, link)
    results = tmp_path / "results"
    assert main(tiny_test_argv(data, checkpoints, results, "--num_test", "1", flag)) == 0
    out = capsys.readouterr().out
    assert f"the trackers do not write in {run}" in out and "made by another user" in out
    assert trackers and all(Path(folder).is_relative_to(results) for folder in trackers)
    assert not any(path.name == EVENTS for path in elsewhere.rglob("*"))


@pytest.mark.parametrize("flag,linked", TRACKER_LINKS)
def test_your_own_linked_tracker_folder_is_followed(data, tmp_path, elsewhere, trackers, capsys,
                                                    flag, linked):
    """A user may keep a run's tracker files on another disk with a link of their own."""
    _plant(tmp_path / "ck" / "tiny" / linked.format(job="train"), elsewhere)
    assert _train(data, tmp_path / "ck", flag) == 0, capsys.readouterr().err
    assert trackers and all(Path(folder).resolve().is_relative_to(elsewhere.resolve())
                            for folder in trackers)
    assert any(path.name == EVENTS for path in elsewhere.rglob("*"))


def test_train_refuses_a_run_folder_another_user_linked(data, tmp_path, elsewhere, monkeypatch,
                                                        capsys):
    link = _plant(tmp_path / "ck" / "tiny", elsewhere)
    as_another_user(monkeypatch, link)
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
            as_another_user(monkeypatch, run)
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
    as_another_user(monkeypatch, link)
    assert _train(data, link) == 0, capsys.readouterr().err
    assert (elsewhere / "tiny" / "latest_net_G.pth").is_file()


@pytest.mark.parametrize("linked", ["tiny", "tiny/test_latest", "tiny/test_latest/images"])
def test_test_refuses_a_linked_results_folder_before_it_writes(
        data, checkpoints, tmp_path, elsewhere, monkeypatch, capsys, linked):
    results = tmp_path / "results"
    link = _plant(results / linked, elsewhere)
    as_another_user(monkeypatch, link)
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
            as_another_user(monkeypatch, self)
        return make_folder(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", planting_mkdir)
    assert main(tiny_test_argv(data, checkpoints, results, "--num_test", "1")) == 1
    _refusal(capsys, results / "tiny", "made by another user")
    assert folder_files(elsewhere) == {"theirs.txt": b"their own file\n"}   # no image


@pytest.mark.parametrize("linked", ["tiny", "tiny/test_latest"])
def test_test_follows_your_own_linked_results_folder(data, checkpoints, tmp_path, elsewhere,
                                                     capsys, linked):
    _plant(tmp_path / "results" / linked, elsewhere)
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test", "1")) == 0
    page = elsewhere / ("test_latest/index.html" if linked == "tiny" else "index.html")
    assert page.is_file(), capsys.readouterr().err


def test_a_run_folder_linked_to_nothing_is_named_in_one_line(data, tmp_path, capsys):
    """Your own link to a run kept on a disk that is not mounted: it said "File exists"."""
    link = _plant(tmp_path / "ck" / "tiny", tmp_path / "unmounted" / "tiny")
    assert _train(data, tmp_path / "ck") == 1
    line = one_line(capsys.readouterr().err)
    assert str(link) in line and "which does not exist" in line and "mount" in line, line


@pytest.mark.parametrize("linked", ["web", "web/images"])
def test_overwrite_clears_the_page_in_your_own_linked_web_folder(data, tmp_path, elsewhere,
                                                                 capsys, linked):
    """Your own web/ link is written through, so --overwrite removes the replaced run's page,
    plot and samples there too (only those names: your other files stay)."""
    run = tmp_path / "ck" / "tiny"
    if linked == "web/images":
        (run / "web").mkdir(parents=True)
    _plant(run / linked, elsewhere)
    assert _train(data, tmp_path / "ck", "--n_epochs", "2", "--display_freq", "1") == 0
    images = run / "web" / "images"
    old = {path.name for path in images.iterdir()} - {"theirs.txt"}
    assert any(name.startswith("epoch002") for name in old)
    assert _train(data, tmp_path / "ck", "--overwrite", "--display_freq", "1") == 0, \
        capsys.readouterr().err
    new = {path.name for path in images.iterdir()}
    assert not any(name.startswith("epoch002") for name in new), new
    assert "epoch002" not in (run / "web" / "index.html").read_text()
    assert (elsewhere / "theirs.txt").is_file()


@pytest.mark.parametrize("linked", ["web", "web/images"])
def test_a_web_folder_linked_to_nothing_is_named_before_anything_is_written(
        data, tmp_path, capsys, linked):
    run = tmp_path / "ck" / "tiny"
    run.mkdir(parents=True)
    if linked == "web/images":
        (run / "web").mkdir()
    link = _plant(run / linked, tmp_path / "unmounted" / "web")
    assert _train(data, tmp_path / "ck") == 1
    line = one_line(capsys.readouterr().err)
    assert str(link) in line and "which does not exist" in line, line
    assert not (run / "train_opt.txt").exists()
