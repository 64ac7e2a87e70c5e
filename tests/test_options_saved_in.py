"""The model options `fastp2p train` / `fastp2p test` name for a network file
(fastp2p.train.networks.options_saved_in), read off it as from_checkpoint reads it
(fastp2p.nn.checkpoint.network_in_file)."""
import pytest
import torch

import fastp2p
from fastp2p.train.networks import SavedNetwork, options_saved_in


@pytest.mark.parametrize("network, saved", [
    (lambda: fastp2p.UNet(1, 2, 6, ngf=4, norm="instance"),
     SavedNetwork("G", "U-Net generator",
                  "--netG unet_64 --ngf 4 --norm instance --input_nc 1 --output_nc 2")),
    (lambda: fastp2p.PatchDiscriminator(6, ndf=4),
     SavedNetwork("D", "PatchGAN discriminator",
                  "--netD basic --ndf 4 --norm batch (and input_nc + output_nc = 6)")),
    (lambda: fastp2p.PatchDiscriminator(4, ndf=8, n_layers=1, norm="none"),
     SavedNetwork("D", "PatchGAN discriminator", "--netD n_layers --n_layers_D 1 --ndf 8 "
                                                 "--norm none (and input_nc + output_nc = 4)")),
    (lambda: fastp2p.PixelDiscriminator(6, ndf=4),
     SavedNetwork("D", "PixelGAN discriminator",
                  "--netD pixel --ndf 4 --norm batch (and input_nc + output_nc = 6)")),
], ids=["unet", "basic", "n_layers", "pixel"])
def test_each_network_file_is_named_with_its_options(network, saved):
    assert options_saved_in(network().state_dict()) == saved


def test_a_file_of_no_network_has_no_options():
    assert options_saved_in({"layer.weight": torch.zeros(2, 2)}) is None
