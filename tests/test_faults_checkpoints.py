"""Fault injection on training and its checkpoints (issue 12), CPU, tiny runs: no code runs from
a checkpoint, nothing non-finite is saved, a checkpoint set changes all together or not at all,
failed writes are one-line errors with exit code 1, and stale temporary files go away."""
import errno
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder, CheckpointWriteError
from fastp2p.train.engine import Pix2PixEngine
from fastp2p.train.schedulers import LRSchedule
from fastp2p.train.trainer import Trainer
from helpers.train_helpers import (replace_in_set, tiny_networks, tiny_test_argv, train_argv,
                                   write_aligned_dataset)


class CodeRunner:
    """Unpickling this creates ``marker``: what an attacker's checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


class SimulatedKill(BaseException):
    """Stops a save where kill -9 would: no except or cleanup code of the project runs."""


def _checkpoint_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.name.endswith((".pth", ".json")) and not path.name.startswith(".")}


def _one_line_error(captured):
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.startswith(("fastp2p train: error:", "fastp2p test: error:"))]
    assert len(lines) == 1, captured
    return lines[0]


@pytest.fixture
def trained(tmp_path):
    """A finished one-epoch run: (dataroot, checkpoints dir, argv, run folder)."""
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")
    assert main(argv) == 0
    return data, tmp_path / "ckpt", argv, tmp_path / "ckpt" / "tiny"


# ---- 1. no code runs from a checkpoint ------------------------------------------------------

def _malicious(marker) -> bytes:
    path = marker.with_suffix(".pth")
    torch.save({"format": 2, "payload": CodeRunner(marker)}, path)
    return path.read_bytes()


def test_malicious_train_state_is_refused_and_runs_nothing(trained, tmp_path, capsys):
    _, _, argv, folder = trained
    marker = tmp_path / "pwned"
    replace_in_set(folder, "latest", "latest_train_state.pth", _malicious(marker))
    capsys.readouterr()
    assert main(argv + ["--continue_train"]) == 1
    line = _one_line_error(capsys.readouterr())
    assert "latest_train_state.pth" in line and "refused" in line
    assert not marker.exists()


def test_malicious_network_file_is_refused_and_runs_nothing(trained, tmp_path, capsys):
    data, checkpoints, _, folder = trained
    marker = tmp_path / "pwned"
    replace_in_set(folder, "latest", "latest_net_G.pth", _malicious(marker))
    capsys.readouterr()
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) == 1
    assert "refused" in _one_line_error(capsys.readouterr())
    import fastp2p
    with pytest.raises(ValueError, match="refused"):
        fastp2p.UNet.from_checkpoint(folder / "latest_net_G.pth")
    assert not marker.exists()


def test_a_cut_network_file_without_a_manifest_is_named_by_test_and_resume(trained, tmp_path,
                                                                          capsys):
    """A reference-style folder (no manifest, no training state) with latest_net_G.pth cut
    short: both commands name the file and what is wrong with it, in one line."""
    data, checkpoints, argv, folder = trained
    (folder / "latest_checkpoint.json").unlink()
    (folder / "latest_train_state.pth").unlink()
    network = folder / "latest_net_G.pth"
    network.write_bytes(network.read_bytes()[:5_000])
    capsys.readouterr()
    for command in (tiny_test_argv(data, checkpoints, tmp_path / "results"),
                    argv + ["--continue_train"]):
        assert main(command) == 1
        line = _one_line_error(capsys.readouterr())
        assert str(network) in line and "truncated or damaged" in line, line


def test_a_network_file_holding_nan_is_refused_by_test_and_resume(trained, tmp_path, capsys):
    """A reference-style set whose G holds a NaN (a diverged run's weights, written by a tool
    that does not check): test would write NaN images and resume would train from them."""
    data, checkpoints, argv, folder = trained
    (folder / "latest_checkpoint.json").unlink()
    (folder / "latest_train_state.pth").unlink()
    network = folder / "latest_net_G.pth"
    state = torch.load(network, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key].view(-1)[1] = float("nan")
    torch.save(state, network)
    capsys.readouterr()
    for command in (tiny_test_argv(data, checkpoints, tmp_path / "results"),
                    argv + ["--continue_train"]):
        assert main(command) == 1
        line = _one_line_error(capsys.readouterr())
        assert str(network) in line and key in line and "NaN or Inf" in line, line


def _first_weight_as(state, convert):
    """``state`` with its first 4-d weight replaced by ``convert(weight)``: a complex weight
    holding NaN passed the NaN / Inf check (test wrote NaN images), an integer one was a
    traceback from torch's load."""
    key = next(k for k, v in state.items() if v.dim() == 4)
    return {**state, key: convert(state[key])}


@pytest.mark.parametrize("held,expected", [
    (lambda state: torch.zeros(3), "holds a Tensor, not a network's state_dict"),
    (lambda state: list(state.values()), "holds a list, not a network's state_dict"),
    (lambda state: {k: v.to("meta") for k, v in state.items()}, "is a meta tensor (no data)"),
    (lambda state: {k: v.to_sparse() if v.dim() == 4 else v for k, v in state.items()},
     "is a torch.sparse_coo"),
    (lambda state: _first_weight_as(state, lambda w: torch.complex(w, w).fill_(float("nan"))),
     "holds torch.complex64 values, not a network's floating-point weights"),
    (lambda state: _first_weight_as(state, lambda w: w.long()),
     "holds torch.int64 values, not a network's floating-point weights"),
    (lambda state: _first_weight_as(state, lambda w: w > 0),
     "holds torch.bool values, not a network's floating-point weights"),
], ids=["tensor", "list", "meta", "sparse", "complex-nan", "integer", "bool"])
def test_a_network_file_holding_no_weights_is_named_by_test_and_resume(trained, tmp_path, capsys,
                                                                       held, expected):
    """A reference-style set whose G file holds something else than a state_dict of dense
    tensors: one line naming the file, not a traceback."""
    data, checkpoints, argv, folder = trained
    (folder / "latest_checkpoint.json").unlink()
    (folder / "latest_train_state.pth").unlink()
    network = folder / "latest_net_G.pth"
    torch.save(held(torch.load(network, weights_only=True)), network)
    capsys.readouterr()
    for command in (tiny_test_argv(data, checkpoints, tmp_path / "results"),
                    argv + ["--continue_train"]):
        assert main(command) == 1
        line = _one_line_error(capsys.readouterr())
        assert str(network) in line and expected in line, line


@pytest.mark.parametrize("command,option,value,expected", [
    ("test", "--ngf", "8", "--netG unet_32 --ngf 4 --norm batch --input_nc 3 --output_nc 3"),
    ("test", "--norm", "instance", "--ngf 4 --norm batch"),
    ("resume", "--ndf", "8", "--netD basic --ndf 4 --norm batch"),
    ("resume", "--n_layers_D", "2", "--netD basic"),
    ("resume", "--netD", "pixel", "--netD basic --ndf 4"),
])
def test_other_model_options_are_told_the_options_the_file_was_saved_with(
        trained, tmp_path, capsys, command, option, value, expected):
    data, checkpoints, argv, folder = trained
    if command == "test":
        argv = tiny_test_argv(data, checkpoints, tmp_path / "results", option, value)
    else:
        argv = argv + ["--continue_train", option, value]
        if option == "--n_layers_D":
            argv += ["--netD", "n_layers"]
    capsys.readouterr()
    assert main(argv) == 1
    line = _one_line_error(capsys.readouterr())
    net = "G" if command == "test" else "D"
    assert str(folder / f"latest_net_{net}.pth") in line and expected in line, line
    assert "from_checkpoint" not in line


def test_resuming_a_finished_run_says_there_is_nothing_to_train(trained, capsys):
    """The reference's loop just runs no epoch; here one line says so and how to go on, and
    no file of the run changes: not even train_opt.txt, which the reference writes at every
    start, as a later resume takes its options from it."""
    _, _, argv, folder = trained

    def written():
        return {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    before = written()
    capsys.readouterr()
    assert main(argv + ["--continue_train"]) == 0
    out = capsys.readouterr().out
    assert "is done up to epoch 1, and this run would end at epoch 1" in out, out
    assert "raise --n_epochs" in out
    assert "training tiny" not in out
    assert written() == before


@pytest.mark.parametrize("changed,said", [
    (["--direction", "BtoA"], "--direction AtoB -> BtoA"),
    (["--seed", "7"], " -> 7"),
    (["--no_dropout"], "--no_dropout False -> True"),
    (["--serial_batches"], "--serial_batches False -> True"),
    (["--lr_policy", "step"], "--lr_policy linear -> step"),
], ids=["direction", "seed", "no_dropout", "serial_batches", "lr_policy"])
def test_resuming_with_another_option_says_so(trained, capsys, changed, said):
    """The reference resumes silently with whatever options are given; here one line names
    each that changes what the run learns (it is still used as given)."""
    _, _, argv, folder = trained
    capsys.readouterr()
    argv = argv + ["--continue_train", "--n_epochs", "2", *changed]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "options the run did not use so far" in out and said in out, out
    option = changed[0].removeprefix("--")
    value = changed[1] if len(changed) > 1 else "True"
    assert f"{option}: {value}" in (folder / "train_opt.txt").read_text()  # the new options


def test_testing_in_the_other_direction_says_so(trained, tmp_path, capsys):
    data, checkpoints, _, _ = trained
    results = tmp_path / "results"
    capsys.readouterr()
    assert main(tiny_test_argv(data, checkpoints, results, "--direction", "BtoA")) == 0
    assert "translates the other way than the run was trained (--direction AtoB -> BtoA" in (
        capsys.readouterr().out)
    assert main(tiny_test_argv(data, checkpoints, results)) == 0
    assert "other way" not in capsys.readouterr().out


def test_a_set_that_was_never_saved_is_told_the_sets_that_were(trained, tmp_path, capsys):
    """--load_iter / --epoch of no saved set: the error lists the options that load the sets
    there are (the reference's FileNotFoundError named the missing file only)."""
    data, checkpoints, argv, folder = trained
    for label in ("iter_40", "10"):  # set names of --save_by_iter and a later epoch
        for suffix in ("net_G.pth", "net_D.pth", "train_state.pth"):
            (folder / f"{label}_{suffix}").write_bytes((folder / f"1_{suffix}").read_bytes())
    saved = "--epoch 1, --epoch 10, --epoch latest, --load_iter 40"
    capsys.readouterr()
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results", "--load_iter", "5")) == 1
    line = _one_line_error(capsys.readouterr())
    assert "iter_5_net_G.pth" in line and f"pick a saved set ({saved})" in line, line
    assert main(argv + ["--continue_train", "--epoch", "7"]) == 1
    line = _one_line_error(capsys.readouterr())
    assert "7_train_state.pth" in line and f"resume a saved set ({saved})" in line, line
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results", "--name", "other")) == 1
    assert "train first (fastp2p train --name other)" in _one_line_error(capsys.readouterr())


def test_train_state_of_the_old_format_gets_a_clear_error(trained, capsys):
    _, _, argv, folder = trained
    (folder / "latest_checkpoint.json").unlink()
    torch.save({"format": 1, "python_rng": random.getstate()}, folder / "latest_train_state.pth")
    capsys.readouterr()
    assert main(argv + ["--continue_train"]) == 1
    line = _one_line_error(capsys.readouterr())
    assert "format 1" in line and "older fastp2p" in line


def test_train_state_restores_python_and_numpy_rngs_from_plain_containers(tmp_path):
    netG, netD = tiny_networks()
    args = type("Args", (), {"n_epochs": 1, "n_epochs_decay": 0, "epoch_count": 1,
                             "precision": "fp32"})()
    schedule = LRSchedule("linear", 2e-4, n_epochs=1, n_epochs_decay=0)
    trainer = Trainer(args, Pix2PixEngine(netG, netD), netG, netD, schedule,
                      CheckpointFolder(tmp_path, "run"))
    random.seed(3)
    np.random.seed(4)
    np.random.standard_normal()  # a cached Gaussian is part of numpy's state
    path = tmp_path / "state.pth"
    torch.save(trainer.train_state(), path)
    expected = (random.random(), np.random.standard_normal(), np.random.random())
    random.seed(99)
    np.random.seed(99)
    trainer.resume(torch.load(path, weights_only=True))
    assert (random.random(), np.random.standard_normal(), np.random.random()) == expected


# ---- 2. nothing non-finite is saved ---------------------------------------------------------

def _poison_running_var_at(monkeypatch, step):
    original = Pix2PixEngine.step

    def step_then_poison(self, real_A, real_B):
        original(self, real_A, real_B)
        if self.steps == step:
            batch_norm = next(m for m in self.netG.modules()
                              if isinstance(m, torch.nn.BatchNorm2d))
            batch_norm.running_var[0] = float("inf")
    monkeypatch.setattr(Pix2PixEngine, "step", step_then_poison)


def test_inf_in_a_buffer_stops_before_the_save_and_keeps_the_last_good_one(tmp_path, monkeypatch,
                                                                          capsys):
    data = write_aligned_dataset(tmp_path / "data")
    _poison_running_var_at(monkeypatch, 6)
    # epoch 1 (steps 1-4) ends with a save; in epoch 2 latest is saved every 2 images
    code = main(train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "2"))
    assert code == 1
    err = capsys.readouterr().err
    assert "running_var holds NaN or Inf at step 6" in err and "netG." in err
    assert "(step 4) is unchanged" in err and "--precision fp32" not in err
    folder = CheckpointFolder(tmp_path / "ckpt", "tiny")
    assert folder.load_train_state("latest")["progress"]["images"] == 4
    for which in ("G", "D"):
        weights = torch.load(folder.file("latest", f"net_{which}.pth"), weights_only=True)
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_divergence_before_any_save_does_not_promise_a_checkpoint(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    _poison_running_var_at(monkeypatch, 1)
    assert main(train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "1")) == 1
    err = capsys.readouterr().err
    assert "no checkpoint was written" in err and "unchanged" not in err
    assert not list((tmp_path / "ckpt" / "tiny").glob("*.pth"))


def test_nan_loss_before_any_save_does_not_promise_a_checkpoint(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data")
    original = Pix2PixEngine.step

    def poisoned_step(self, real_A, real_B):
        original(self, real_A * float("nan") if self.steps == 0 else real_A, real_B)
    monkeypatch.setattr(Pix2PixEngine, "step", poisoned_step)
    assert main(train_argv(data, tmp_path / "ckpt")) == 1
    err = capsys.readouterr().err
    assert "NaN or Inf at step 1" in err and "no checkpoint was written" in err


def test_optimizer_state_is_checked_too():
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    engine.step(torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1)
    assert engine.first_nonfinite_tensor() is None
    first = next(iter(engine.optimizer_D.state.values()))
    first["exp_avg_sq"].view(-1)[0] = float("nan")
    assert engine.first_nonfinite_tensor() == "optimizer_D exp_avg_sq of model.0.weight"


# ---- 3. a set changes all together or not at all --------------------------------------------

def _kill_at_replace(monkeypatch, call):
    """os.replace works until its ``call``-th use, which is where the process dies. The save's
    renames are: the manifest (the commit), then G, D and the training state."""
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == call:
            raise SimulatedKill
        real_replace(src, dst)
    monkeypatch.setattr(checkpoints_module.os, "replace", replace)


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def _assert_state(net, expected):
    assert all(torch.equal(net.state_dict()[k], v) for k, v in expected.items())


@pytest.mark.parametrize("dies_at", [1, 2, 3, 4], ids=["before-commit", "after-commit",
                                                       "after-G", "after-D"])
def test_a_save_killed_between_renames_resumes_one_whole_set(tmp_path, monkeypatch, dies_at):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"tag": "old"})
    old_G, old_D = _state(netG), _state(netD)
    with torch.no_grad():
        for param in list(netG.parameters()) + list(netD.parameters()):
            param.add_(1.0)
    new_G, new_D = _state(netG), _state(netD)
    with monkeypatch.context() as patch:
        _kill_at_replace(patch, dies_at)
        with pytest.raises(SimulatedKill):
            folder.save(["latest"], netG, netD, {"tag": "new"})
    committed = dies_at > 1
    expected_tag, expected_G, expected_D = (("new", new_G, new_D) if committed
                                            else ("old", old_G, old_D))
    loadG, loadD = tiny_networks(seed=7)
    for finish_first in (False, True):  # loading picks the recorded files; prepare renames them
        if finish_first:
            folder.prepare()
            if committed:
                assert not list(folder.path.glob(".*"))
        assert folder.load_train_state("latest")["tag"] == expected_tag
        folder.load_network(loadG, "latest", "G")
        folder.load_network(loadD, "latest", "D")
        _assert_state(loadG, expected_G)
        _assert_state(loadD, expected_D)


def test_each_save_is_a_generation_one_later_in_its_manifest_and_state(tmp_path):
    """The generation ties a training state to its manifest (a resume refuses a mismatch): a
    write that stopped counting recorded 0 every time and no test saw it."""
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    for generation in (1, 2, 3):
        folder.save(["latest", str(generation)], netG, netD, {"tag": generation})
        for label in ("latest", str(generation)):
            assert folder.manifest(label)["generation"] == generation
        assert folder.load_train_state("latest")["generation"] == generation


def _other_format(manifest):
    manifest["format"] = manifest["format"] + "-v9"


def _generation_as_text(manifest):
    manifest["generation"] = str(manifest["generation"])


def _size_as_text(manifest):
    entry = next(iter(manifest["files"].values()))
    entry["size"] = str(entry["size"])


@pytest.mark.parametrize("edit", [_other_format, _generation_as_text, _size_as_text],
                         ids=["format", "generation", "size"])
def test_a_manifest_fastp2p_did_not_write_is_refused_by_every_reader(tmp_path, edit):
    """Another tool's (or a newer format's) manifest is not taken as this set's record."""
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"tag": "saved"})
    path = folder.file("latest", "checkpoint.json")
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    refused = f"{path}: not a fastp2p checkpoint manifest; "
    with pytest.raises(ValueError, match=re.escape(refused)):
        folder.load_train_state("latest")
    with pytest.raises(ValueError, match=re.escape(refused)):
        type(netG).from_checkpoint(folder.file("latest", "net_G.pth"))


def test_every_file_of_a_set_is_on_disk_before_its_manifest_commits_it(tmp_path, monkeypatch):
    """A power loss after the manifest's rename must find the files it records: each staged
    file and the manifest are fsynced before that rename, and the folder after it, before the
    staged files are renamed over the old set's (whose renames could otherwise reach the disk
    without the manifest's). Dropping any of these fsyncs passed every test."""
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    real_fsync, real_replace, events = os.fsync, os.replace, []
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(
        ("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda source, target: events.append(
        ("rename", str(source), str(target))) or real_replace(source, target))
    folder.save(["latest"], netG, netD, {"tag": "saved"})
    manifest = str(folder.file("latest", "checkpoint.json"))
    commit = next(at for at, event in enumerate(events) if event[0] == "rename"
                  and event[2] == manifest)
    synced_before = {event[1] for event in events[:commit] if event[0] == "fsync"}
    renamed = [event[1] for event in events if event[0] == "rename"]
    assert len(renamed) == 4 and set(renamed) <= synced_before, events
    assert events[commit + 1] == ("fsync", str(folder.path)), events


@pytest.mark.parametrize("fails_at", [1, 3], ids=["the-commit", "after-the-commit"])
def test_a_rename_that_fails_keeps_whichever_set_its_manifest_records(tmp_path, monkeypatch,
                                                                      fails_at):
    """An OSError (EIO, a folder in the way) at one of a save's renames: before the commit the
    old set stays; after it the new set's staged files stay for the next run to move into
    place (removing them too left a manifest recording files that no longer exist, and the
    next --continue_train refused both saves)."""
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"tag": "old"})
    real_replace, calls = os.replace, []

    def replace(source, target):
        calls.append(target)
        if len(calls) == fails_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        real_replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints_module.os, "replace", replace)
        with pytest.raises(CheckpointWriteError) as failed:
            folder.save(["latest"], netG, netD, {"tag": "new"})
    committed = fails_at > 1
    assert ("recorded in its manifest" in str(failed.value)) == committed
    folder.prepare()
    assert folder.load_train_state("latest")["tag"] == ("new" if committed else "old")
    folder.load_network(tiny_networks(seed=7)[1], "latest", "D")
    assert not list(folder.path.glob(".*"))


def test_a_set_mixed_by_hand_is_refused(tmp_path):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {"tag": "old"})
    old_D = folder.file("latest", "net_D.pth").read_bytes()
    with torch.no_grad():
        next(netD.parameters()).add_(1.0)
    folder.save(["latest"], netG, netD, {"tag": "new"})
    folder.file("latest", "net_D.pth").write_bytes(old_D)
    with pytest.raises(ValueError, match="latest_net_D.pth is not the file its manifest"):
        folder.load_network(netD, "latest", "D")


def test_the_reference_layout_stays_plain_state_dicts(trained):
    *_, folder = trained
    netG, _ = tiny_networks()
    weights = torch.load(folder / "latest_net_G.pth", weights_only=True)
    assert set(weights) == set(netG.state_dict())


# ---- 4. failed writes are one-line errors; the checkpoint stays -----------------------------

def _rerun_with_more_epochs(argv):
    return argv + ["--continue_train", "--n_epochs", "2"]


def test_a_full_disk_while_writing_samples(trained, monkeypatch, capsys):
    """Samples, plot and page are views of the run: one warning line, and training goes on and
    saves its checkpoints (a checkpoint that then cannot be written stops it, as above)."""
    _, _, argv, folder = trained

    def disk_full(self, fp, *args, **kwargs):   # a write's error names no file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Image.Image, "save", disk_full)
    capsys.readouterr()
    assert main(_rerun_with_more_epochs(argv)) == 0
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines()
             if line.startswith(("warning:", "error:"))]
    assert len(lines) == 1 and lines[0].startswith("warning:"), captured
    assert ".png" in lines[0] and os.strerror(errno.ENOSPC) in lines[0]
    assert CheckpointFolder(folder.parent, folder.name).manifest("latest")["step"] == 8


def test_a_read_only_checkpoints_folder_at_start(tmp_path, monkeypatch, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    checkpoints = tmp_path / "ckpt"
    real_mkdir = type(checkpoints).mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(checkpoints)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)
    monkeypatch.setattr(type(checkpoints), "mkdir", read_only)
    assert main(train_argv(data, checkpoints)) == 1
    line = _one_line_error(capsys.readouterr())
    assert str(checkpoints / "tiny") in line and os.strerror(errno.EROFS) in line


def test_a_file_system_turned_read_only_during_a_save_and_its_cleanup(trained, monkeypatch,
                                                                      capsys):
    _, _, argv, folder = trained
    before = _checkpoint_bytes(folder)

    def read_only_save(obj, handle):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder / "latest_net_G.pth"))

    def read_only_unlink(self, missing_ok=False):
        if self.exists() or not missing_ok:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
    monkeypatch.setattr(checkpoints_module.torch, "save", read_only_save)
    monkeypatch.setattr(type(folder), "unlink", read_only_unlink)
    capsys.readouterr()
    assert main(_rerun_with_more_epochs(argv)) == 1
    line = _one_line_error(capsys.readouterr())
    assert "latest_net_G.pth" in line and os.strerror(errno.EROFS) in line
    assert _checkpoint_bytes(folder) == before
    # the temporary file the read-only file system kept goes with the next run (test below);
    # so does the run lock's file (no lock once its process is gone:
    # tests/tiny_run/test_run_lock.py)
    assert [p.name for p in folder.glob(".*") if p.name != ".lock"] == [
        f".latest_net_G.pth.tmp-{os.getpid()}.pth"]


# ---- 5. temporary files of killed saves are removed by the next run -------------------------

def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_run_removes_stale_temporary_files_of_its_own_name(trained, capsys):
    _, checkpoints, argv, folder = trained
    dead = _dead_pid()
    stale = folder / f".latest_net_G.pth.tmp-{dead}.pth"
    alive = folder / f".latest_net_D.pth.tmp-{os.getppid()}.pth"  # a live process's save
    other_run = checkpoints / "other" / f".latest_net_G.pth.tmp-{dead}.pth"
    other_run.parent.mkdir()
    for path in (stale, alive, other_run):
        path.write_bytes(b"x" * 100)
    assert main(_rerun_with_more_epochs(argv)) == 0
    assert not stale.exists() and alive.exists() and other_run.exists()


@pytest.mark.parametrize("blocked,made,said", [
    ("tiny", "file", "is a file, where a folder is made"),
    ("tiny/web", "file", "is a file, where a folder is made"),
    ("tiny", "fifo", "is a special file (a FIFO, device or socket), where a folder is made"),
    ("tiny/train_opt.txt", "folder", "is a folder, where a file is written"),
], ids=["run-folder", "web", "run-folder-fifo", "options-file"])
def test_a_file_or_folder_in_the_way_of_the_run_is_named(tmp_path, capsys, blocked, made, said):
    """mkdir's "File exists", a "Not a directory" below the path, or a rename's "Is a
    directory" naming its temporary file: said as what stands in the way, and where."""
    data = write_aligned_dataset(tmp_path / "data")
    path = tmp_path / "ckpt" / blocked
    path.parent.mkdir(parents=True)
    {"folder": path.mkdir, "file": path.touch, "fifo": lambda: os.mkfifo(path)}[made]()
    assert main(train_argv(data, tmp_path / "ckpt")) == 1
    line = _one_line_error(capsys.readouterr())
    assert f"{path}: {said}" in line, line


def test_a_folder_in_place_of_a_network_file_is_named_by_resume(trained, capsys):
    """A reference-style set (no manifest, no training state) whose G file is a folder: it was
    "no checkpoint ..._train_state.pth to resume from", hiding what is wrong."""
    _, _, argv, folder = trained
    (folder / "latest_checkpoint.json").unlink()
    (folder / "latest_train_state.pth").unlink()
    network = folder / "latest_net_G.pth"
    network.unlink()
    network.mkdir()
    capsys.readouterr()
    assert main(argv + ["--continue_train"]) == 1
    line = _one_line_error(capsys.readouterr())
    assert f"{network}: is a folder, not a network file" in line, line
