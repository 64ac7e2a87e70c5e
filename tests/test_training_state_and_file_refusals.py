"""What a resume and a write refuse, and which leftovers they remove: ``train_state_problem``
names the field of a crafted training state just past what ``Trainer.train_state()`` writes (a
boundary, a bool where a count is, a required field missing or None, a NaN inside a tuple), not
another check it trips later or a TypeError; an older fastp2p's ``NAME.tmp-PID`` of a dead
process is removed like ``.NAME.tmp-PID.SUFFIX``, a file of a process that cannot be signalled
(another user's) is kept; a FIFO or a folder at a file's name is named before anything is
changed; an OSError that names its own file keeps that name; a fresh run in a run folder names
three of its saved files and counts the rest; a split making no full batch is one line."""
import copy
import os
import random
import sys
from argparse import Namespace
from dataclasses import asdict

import numpy as np
import pytest
import torch

import fastp2p.data
from fastp2p import atomic_files
from fastp2p.atomic_files import (NotAPlainFile, naming_the_file, process_alive,
                                  refuse_unless_plain_file, remove_left_by_dead_processes)
from fastp2p.cli import main
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.train_state_check import train_state_problem
from fastp2p.train.resuming import check_fresh_run
from fastp2p.train.position import Progress
from helpers.data_helpers import dead_pid
from helpers.train_helpers import (random_batches, tiny_networks, train_argv,
                                   write_aligned_dataset)

POSIX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX pids, FIFOs")


@pytest.fixture(scope="module")
def state():
    """A state as ``Trainer.train_state()`` writes it, after one engine step (Adam's moments
    exist) of tiny networks."""
    netG, netD = tiny_networks(seed=5)
    engine = Pix2PixEngine(netG, netD)
    for real_A, real_B in random_batches(1, seed=7):
        engine.step(real_A, real_B)
    schedule = LRSchedule("linear", 2e-4, n_epochs=2, n_epochs_decay=1)
    version, keys, gaussian = random.getstate()
    kind, numpy_keys, position, has_gauss, cached = np.random.get_state()
    progress = Progress(epoch=2, epoch_batches=1, images=6, epoch_images=2, batch_size=2,
                        world_size=1, epoch_loss_sum=3.5, epoch_loss_reads=1)
    return {"engine": engine.state_dict(), "schedule": schedule.state_dict(),
            "progress": asdict(progress),
            "python_rng": {"version": version, "keys": list(keys), "gaussian": gaussian},
            "numpy_rng": {"kind": kind, "keys": torch.from_numpy(numpy_keys.astype(np.int64)),
                          "position": int(position), "has_gauss": int(has_gauss),
                          "cached_gaussian": float(cached)}}


def test_the_state_as_written_has_no_problem(state):
    assert train_state_problem(copy.deepcopy(state)) is None


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def craft(state):
        target = state
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return craft


def _drop(*keys):
    def craft(state):
        target = state
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return craft


# (craft, words its problem must hold)
CRAFTS = {
    "epoch_zero": (_set("progress", "epoch", 0), "progress['epoch'] is 0, not in [1,"),
    "images_a_bool": (_set("progress", "images", True), "progress['images'] is True"),
    "epoch_batches_a_bool": (_set("progress", "epoch_batches", False),
                             "progress['epoch_batches'] is False"),
    "images_missing": (_drop("progress", "images"), "'progress' lacks ['images']"),
    "epoch_none": (_set("progress", "epoch", None), "progress['epoch'] is None"),
    "images_none": (_set("progress", "images", None), "progress['images'] is None"),
    "plateau_scale_zero": (_set("schedule", "plateau_scale", 0.0),
                           "schedule['plateau_scale'] is 0.0, not in (0, 1]"),
    "bad_epochs_negative": (_set("schedule", "bad_epochs", -1),
                            "schedule['bad_epochs'] is -1, not a count"),
    "device_step_minus_one": (_set("engine", "device_step", torch.tensor(-1)),
                              "engine['device_step'] is not a count of steps"),
    "no_parameter_groups": (_set("engine", "optimizer_G", "param_groups", []),
                            "engine['optimizer_G'] has no 'param_groups' list"),
    "cuda_rng_of_floats": (_set("engine", "rng", "cuda", torch.rand(16)),
                           "engine['rng']['cuda'] is not a uint8 tensor"),
    "nan_in_a_tuple": (_set("engine", "optimizer_G", "param_groups", 0, "betas",
                            (0.5, float("nan"))),
                       "engine['optimizer_G']['param_groups'][0]['betas'][1] holds NaN or Inf"),
}


@pytest.mark.parametrize("name", list(CRAFTS))
def test_a_crafted_value_is_refused_naming_its_field(state, name):
    craft, words = CRAFTS[name]
    crafted = copy.deepcopy(state)
    craft(crafted)
    problem = train_state_problem(crafted)
    assert problem is not None and words in problem, problem


def test_a_long_crafted_value_is_shortened_in_the_problem(state):
    crafted = copy.deepcopy(state)
    crafted["progress"]["epoch"] = "epoch " * 100
    problem = train_state_problem(crafted)
    assert problem == f"progress['epoch'] is {repr('epoch ' * 100)[:57]}..."


@POSIX
def test_an_older_versions_temporary_file_of_a_dead_process_is_removed(tmp_path):
    pid = dead_pid()
    older = tmp_path / f"shard-0003.u8.tmp-{pid}"        # NAME.tmp-PID, no leading dot
    hidden = tmp_path / f".shard-0004.u8.tmp-{pid}.u8"   # temporary_sibling's name
    kept = tmp_path / "shard-0005.u8"
    for path in (older, hidden, kept):
        path.write_bytes(os.urandom(64))
    assert not process_alive(pid)
    remove_left_by_dead_processes(tmp_path, "*.tmp-*")
    assert sorted(path.name for path in tmp_path.iterdir()) == [kept.name]


@POSIX
def test_a_process_that_cannot_be_signalled_counts_as_alive(tmp_path, monkeypatch):
    """os.kill(pid, 0) on another user's process raises PermissionError: it runs, and its file
    may be renamed into place any moment."""
    pid = dead_pid()

    def not_permitted(target, number):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(atomic_files.os, "kill", not_permitted)
    temp = tmp_path / f".index.html.tmp-{pid}.html"
    temp.write_bytes(os.urandom(32))
    assert process_alive(pid)
    remove_left_by_dead_processes(tmp_path)
    assert temp.exists()


@POSIX
def test_a_fifo_at_a_files_name_is_refused_as_a_special_file(tmp_path):
    fifo = tmp_path / "loss_log.csv"
    os.mkfifo(fifo)
    with pytest.raises(NotAPlainFile, match="loss_log.csv is a special file, not a plain file"):
        refuse_unless_plain_file(fifo)
    folder = tmp_path / "index.html"
    folder.mkdir()
    with pytest.raises(NotAPlainFile, match="index.html is a folder, not a plain file"):
        refuse_unless_plain_file(folder)
    plain = tmp_path / "train_opt.txt"
    plain.write_bytes(os.urandom(16))
    refuse_unless_plain_file(plain)
    refuse_unless_plain_file(tmp_path / "absent.csv")


def test_an_os_error_naming_its_own_file_keeps_that_name(tmp_path):
    """naming_the_file names the file only for errors that name none (a full disk at a
    buffered write); one that names another file (the temporary file, a folder) says that."""
    own = str(tmp_path / ".index.html.tmp-12.html")
    with pytest.raises(OSError) as raised:
        with naming_the_file(tmp_path / "index.html"):
            raise PermissionError(13, "Permission denied", own)
    assert raised.value.filename == own
    with pytest.raises(OSError) as raised:
        with naming_the_file(tmp_path / "index.html"):
            raise OSError(28, "No space left on device")
    assert raised.value.filename == str(tmp_path / "index.html")


def test_a_fresh_run_names_three_saved_files_and_counts_the_rest(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    names = ["10_net_G.pth", "5_net_G.pth", "latest_checkpoint.json", "latest_net_G.pth",
             "15_checkpoint.json", "20_net_G.pth"]
    for name in names + ["latest_net_D.pth", "notes.txt"]:
        (folder / name).write_bytes(os.urandom(8))
    args = Namespace(checkpoints_dir=str(tmp_path), name="tiny", continue_train=False,
                     overwrite=False)
    with pytest.raises(ValueError) as raised:
        check_fresh_run(args)
    shown = ", ".join(sorted(names)[:3])
    assert f"{folder} already holds a run ({shown} and 3 more): resume it" in str(raised.value)


def test_a_dataset_making_no_full_batch_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """With drop_last (CUDA graphs drop a short last batch) 2 pairs make no batch of 4: the
    run says so, instead of training no step."""
    original = fastp2p.data.create_dataloader

    def dropping_last(*args, **kwargs):
        return original(*args, **{**kwargs, "drop_last": True})
    monkeypatch.setattr(fastp2p.data, "create_dataloader", dropping_last)
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",), seed=6)
    assert main(train_argv(data, tmp_path / "ckpt", "--batch_size", "4", "--no_html")) == 1
    assert capsys.readouterr().err.strip() == ("fastp2p train: error: 2 training pairs make no "
                                               "full batch of 4: lower --batch_size")
