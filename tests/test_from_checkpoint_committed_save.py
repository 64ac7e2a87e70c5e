"""A network file of a checkpoint set loads as its manifest records it, as ``fastp2p test``
loads it (QA r40 L1): after a save killed between its commit and its renames, the committed
file still under its temporary name, not the previous save's file at the path given."""
import hashlib
import os

import pytest
import torch

import fastp2p
import fastp2p.train.checkpoints as checkpoints_module
from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import tiny_networks


class SimulatedKill(BaseException):
    """The process dies here (not an error the save handles)."""


def _state(net):
    return {key: value.clone() for key, value in net.state_dict().items()}


def _equal(net, state):
    return all(torch.equal(net.state_dict()[key], value) for key, value in state.items())


def _save_killed_after_commit(monkeypatch, folder, netG, netD):
    """Save, dying at the first rename after the manifest's (the commit): the new files are
    left under their temporary names."""
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise SimulatedKill
        real_replace(src, dst)
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints_module.os, "replace", replace)
        with pytest.raises(SimulatedKill):
            folder.save(["latest"], netG, netD, {})


def _files(path):
    return {entry.name: hashlib.sha256(entry.read_bytes()).hexdigest()
            for entry in sorted(path.iterdir())}


@pytest.fixture
def killed_run(tmp_path, monkeypatch):
    """A run folder whose last save was killed after its commit: (folder, the previous save's
    G and D states, the committed save's)."""
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {})
    previous = _state(netG), _state(netD)
    with torch.no_grad():
        for parameter in [*netG.parameters(), *netD.parameters()]:
            parameter.add_(1.0)
    _save_killed_after_commit(monkeypatch, folder, netG, netD)
    return folder, previous, (_state(netG), _state(netD))


def test_loads_the_committed_files_and_writes_nothing(killed_run):
    folder, previous, committed = killed_run
    before = _files(folder.path)
    assert any(name.startswith(".latest_net_G") for name in before)  # still staged
    G = fastp2p.UNet.from_checkpoint(folder.file("latest", "net_G.pth"))
    D = fastp2p.PatchDiscriminator.from_checkpoint(str(folder.file("latest", "net_D.pth")))
    assert _equal(G, committed[0]) and _equal(D, committed[1])
    assert not _equal(G, previous[0])
    _, as_tested = folder.read_network("latest", "G")  # what `fastp2p test` loads
    assert all(torch.equal(G.state_dict()[key], value) for key, value in as_tested.items())
    assert _files(folder.path) == before  # a read finishes no rename


def test_load_state_dict_of_a_path_agrees(killed_run):
    folder, _, committed = killed_run
    G, _ = tiny_networks(seed=5)
    G.load_state_dict(str(folder.file("latest", "net_G.pth")))
    assert _equal(G, committed[0])


def test_relative_path_inside_the_run_folder(killed_run, monkeypatch):
    folder, _, committed = killed_run
    monkeypatch.chdir(folder.path)
    assert _equal(fastp2p.UNet.from_checkpoint("latest_net_G.pth"), committed[0])


def test_first_save_killed_before_its_renames_loads_the_staged_file(tmp_path, monkeypatch):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    _save_killed_after_commit(monkeypatch, folder, netG, netD)
    assert not folder.file("latest", "net_G.pth").exists()
    assert _equal(fastp2p.UNet.from_checkpoint(folder.file("latest", "net_G.pth")), _state(netG))


def test_a_file_the_manifest_does_not_record_is_refused(tmp_path):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {})
    other, _ = tiny_networks(seed=3)
    torch.save(other.state_dict(), folder.file("latest", "net_G.pth"))  # replaced by hand
    with pytest.raises(ValueError, match="latest_net_G.pth is not the file its manifest .*"
                                         "copy latest_net_G.pth out of the run's folder"):
        fastp2p.UNet.from_checkpoint(folder.file("latest", "net_G.pth"))
    copy = tmp_path / "elsewhere.pth"
    copy.write_bytes(folder.file("latest", "net_G.pth").read_bytes())
    assert _equal(fastp2p.UNet.from_checkpoint(copy), _state(other))


def test_files_without_a_manifest_load_as_they_are(tmp_path):
    """The reference's run folders (no manifest), and a missing file, as before."""
    netG, _ = tiny_networks()
    torch.save(netG.state_dict(), tmp_path / "latest_net_G.pth")
    assert _equal(fastp2p.UNet.from_checkpoint(tmp_path / "latest_net_G.pth"), _state(netG))
    with pytest.raises(FileNotFoundError):
        fastp2p.UNet.from_checkpoint(tmp_path / "5_net_G.pth")


def test_the_read_side_names_the_sets_as_the_writer_does():
    """fastp2p.nn.checkpoint_sets reads what fastp2p.train.checkpoints writes."""
    from fastp2p.nn import checkpoint_sets
    assert checkpoint_sets.MANIFEST_SUFFIX == checkpoints_module.MANIFEST_SUFFIX
    assert checkpoint_sets.MANIFEST_FORMAT == checkpoints_module.MANIFEST_FORMAT
    assert (set(checkpoint_sets.SET_FILE_SUFFIXES)
            == set(checkpoints_module.SET_SUFFIXES) - {checkpoints_module.MANIFEST_SUFFIX})
