"""A file of a checkpoint set loaded while ``fastp2p train`` saves the next set into the run
(QA concurrent 1): the loader read the manifest, then the save committed a newer one and renamed
its files before the loader read the file. The load reads the manifest again and takes the newer
set whole, never a mixed one, and never calls the set damaged; a set that is mixed on a manifest
that stays the same is still refused (tests/test_faults_checkpoints.py)."""
import pytest
import torch

import fastp2p
import fastp2p.nn.checkpoint_sets as checkpoint_sets
from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import tiny_networks


def _state(net):
    return {key: value.clone() for key, value in net.state_dict().items()}


def _saves_before_reads(monkeypatch, folder, netG, netD, saves):
    """Make each of the loader's first ``saves`` file reads run a real save of the next set
    first (the networks' weights moved on), as a training saving between the loader's manifest
    read and its file read; returns the G states saved, in order."""
    real_matching_file, saved = checkpoint_sets.matching_file, []

    def matching_file(path, entry):
        if len(saved) < saves:
            with torch.no_grad():
                for parameter in [*netG.parameters(), *netD.parameters()]:
                    parameter.add_(torch.rand_like(parameter))
            folder.save(["latest"], netG, netD, {}, step=len(saved) + 2)
            saved.append(_state(netG))
        return real_matching_file(path, entry)
    monkeypatch.setattr(checkpoint_sets, "matching_file", matching_file)
    return saved


@pytest.fixture
def run(tmp_path):
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.save(["latest"], netG, netD, {}, step=1)
    return folder, netG, netD


@pytest.mark.parametrize("loader", ["from_checkpoint", "read_network"])
def test_a_set_saved_between_manifest_and_file_reads_loads_whole(run, monkeypatch, loader):
    folder, netG, netD = run
    saved = _saves_before_reads(monkeypatch, folder, netG, netD, saves=1)
    if loader == "from_checkpoint":
        state = fastp2p.UNet.from_checkpoint(folder.file("latest", "net_G.pth")).state_dict()
    else:  # what `fastp2p test` loads
        state = folder.read_network("latest", "G")[1]
    assert len(saved) == 1
    assert all(torch.equal(state[key], value) for key, value in saved[0].items())


def test_a_set_that_keeps_changing_is_not_called_damaged(run, monkeypatch):
    folder, netG, netD = run
    _saves_before_reads(monkeypatch, folder, netG, netD, saves=1000)
    with pytest.raises(ValueError) as refused:
        fastp2p.UNet.from_checkpoint(folder.file("latest", "net_G.pth"))
    message = str(refused.value)
    assert "mixed by hand" not in message and "damaged" not in message
    assert "changed" in message and "latest_checkpoint.json" in message
    assert "\n" not in message
