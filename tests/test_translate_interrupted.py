"""`fastp2p test` and resuming with a network file of the other kind under a network's name (a
reviewer's repro, failing before its fix): the file is called what it holds, not given model
options that cannot load it."""
import shutil

import pytest

from fastp2p.cli import main
from helpers.train_helpers import (one_line, tiny_networks, tiny_test_argv, train_tiny_run,
                                   write_aligned_dataset)

IMAGES = 3   # test pairs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(DATAROOT with 3 test pairs, a checkpoints folder with the 1-epoch run "tiny")."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=IMAGES)
    return data, train_tiny_run(data, tmp_path_factory.mktemp("trained"))


def test_a_discriminator_under_the_generators_name_is_called_one(tmp_path, trained, capsys):
    """It said "was saved by other model options: pass --netD basic --ndf 4 ...", options
    `fastp2p test` does not use."""
    data, checkpoints = trained
    run = tmp_path / "checkpoints" / "tiny"
    run.mkdir(parents=True)
    shutil.copy(checkpoints / "tiny" / "latest_net_D.pth", run / "latest_net_G.pth")
    assert main(tiny_test_argv(data, tmp_path / "checkpoints", tmp_path / "results")) == 1
    error = one_line(capsys.readouterr().err)
    assert error.startswith(f"error: {run / 'latest_net_G.pth'} holds a PatchGAN discriminator, "
                            "not a generator"), error
    assert "--netD" not in error, error


def test_a_generator_under_the_discriminators_name_is_called_one(tmp_path):
    import torch

    from fastp2p.train.checkpoints import CheckpointFolder
    netG, netD = tiny_networks()
    folder = CheckpointFolder(tmp_path, "run")
    folder.path.mkdir()
    torch.save(netG.state_dict(), folder.file("latest", "net_D.pth"))
    with pytest.raises(ValueError, match=r"latest_net_D\.pth holds a U-Net generator, not a "
                                         r"discriminator \(a net_G\.pth file"):
        folder.load_network(netD, "latest", "D")
