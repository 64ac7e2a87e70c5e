"""A web/images that is the user's own symbolic link (README: samples kept on another disk)
keeps an earlier run's samples in numbered folders beside the folder it links to, on that disk:
moved into web/images.N/, beside the link, they crossed file systems and the rename failed
(EXDEV), so a fresh run in a folder whose run saved no checkpoint stopped at its start, and a
--continue_train of networks without a training state warned at each save and kept nothing.
--overwrite finds and removes them there. Two file systems are simulated: os.rename fails with
EXDEV between a path under ``disk`` and one outside it."""
import errno
import os
from pathlib import Path

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from fastp2p.train.kept_runs import KeptNumber
from fastp2p.train.report_names import LOSS_LOG
from fastp2p.train.report_removal import remove_reports
from fastp2p.train.training_page import TrainingPage
from helpers.train_helpers import train_argv, write_aligned_dataset

SAMPLE = "epoch002_step0000003_real_A.png"


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """A folder standing for another file system: a rename into or out of it fails, EXDEV."""
    disk = tmp_path / "disk"
    disk.mkdir()
    rename = os.rename

    def rename_on_one_disk(source, destination, *args, **kwargs):
        sides = {Path(os.path.realpath(path)).is_relative_to(disk)
                 for path in (source, destination)}
        if len(sides) == 2:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), source, None, destination)
        return rename(source, destination, *args, **kwargs)
    monkeypatch.setattr(os, "rename", rename_on_one_disk)
    return disk


def _linked_images(run, disk):
    """run/web/images, linked to disk/samples."""
    (disk / "samples").mkdir()
    (run / "web").mkdir(parents=True, exist_ok=True)
    (run / "web" / "images").symlink_to(disk / "samples")
    return disk / "samples"


def test_a_fresh_run_keeps_the_samples_beside_the_folder_web_images_links_to(tmp_path, disk,
                                                                            capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=4)
    samples = _linked_images(tmp_path / "ck" / "tiny", disk)
    assert main(train_argv(data, tmp_path / "ck")) == 0
    folder = CheckpointFolder(tmp_path / "ck", "tiny")
    folder.remove_sets(folder.saved_sets())   # as if killed before its first save
    unsaved_runs_samples = {path.name: path.read_bytes() for path in samples.iterdir()}
    capsys.readouterr()
    assert main(train_argv(data, tmp_path / "ck", "--n_epochs_decay", "0", "--seed", "5")) == 0
    kept = disk / "samples.1"
    assert {path.name: path.read_bytes() for path in kept.iterdir()} == unsaved_runs_samples
    assert (folder.path / "loss_log.1.csv").is_file()   # the same N
    assert not (folder.path / "web" / "images.1").exists()
    said = [line for line in capsys.readouterr().err.splitlines() if "samples.1/" in line]
    assert len(said) == 1 and f"kept in {kept}/ beside {samples}, the folder it links to" in said[0]


def test_continue_train_keeps_the_samples_beside_the_folder_web_images_links_to(tmp_path, disk):
    run = tmp_path / "run"
    samples = _linked_images(run, disk)
    (samples / SAMPLE).write_bytes(b"the earlier run's")
    said = []
    page = TrainingPage(run / "web", "run", set_aside=True, say=said.append)
    page.add_sample(2, 3, [torch.zeros(1, 3, 4, 4)] * 3)   # staged
    page.set_aside_before_save()
    assert (disk / "samples.1" / SAMPLE).read_bytes() == b"the earlier run's"
    assert (samples / SAMPLE).read_bytes() != b"the earlier run's"   # this run's, unstaged
    assert len(said) == 1 and f"kept in {disk / 'samples.1'}/" in said[0]


def test_the_number_pairs_with_the_loss_log_by_the_folder_it_links_to(tmp_path, disk):
    """An earlier run's samples kept as disk/samples.1: the log takes loss_log.2.csv."""
    run = tmp_path / "run"
    _linked_images(run, disk)
    (disk / "samples.1").mkdir()
    (run / LOSS_LOG).write_text("")
    aside = KeptNumber(run).claim(run / LOSS_LOG, lambda path: path.write_text(""))
    assert aside.name == "loss_log.2.csv"


def test_overwrite_removes_the_samples_kept_beside_the_folder_it_links_to(tmp_path, disk):
    run = tmp_path / "run"
    _linked_images(run, disk)
    for kept in (disk / "samples.1", run / "web" / "images.2"):
        kept.mkdir()
        (kept / SAMPLE).write_bytes(b"")
    (disk / "samples.3").mkdir()
    (disk / "samples.3" / "mine.png").write_bytes(b"mine")
    (disk / "samples.3" / SAMPLE).write_bytes(b"")
    remove_reports(run)
    assert sorted(path.name for path in disk.iterdir()) == ["samples", "samples.3"]
    assert [path.name for path in (disk / "samples.3").iterdir()] == ["mine.png"]
    assert not (run / "web" / "images.2").exists()
