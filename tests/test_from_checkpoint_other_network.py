"""`from_checkpoint` given another network's file (a discriminator's for the generator, as
`fastp2p.UNet.from_checkpoint("latest_net_D.pth")`) names the file, what it looks like and the
class that loads it, as `fastp2p test` does for the same file; it said only "no U-Net outermost
conv key 'model.model.0.weight'"."""
import pytest
import torch

import fastp2p

NETWORKS = {
    "UNet": (lambda: fastp2p.UNet(3, 3, 5, ngf=4), "U-Net generator",
             "UNet(input_nc=3, output_nc=3, num_downs=5, ngf=4, norm='batch')"),
    "PatchDiscriminator": (lambda: fastp2p.PatchDiscriminator(6, ndf=4), "PatchGAN discriminator",
                           "PatchDiscriminator(input_nc=6, ndf=4, n_layers=3, norm='batch')"),
    "PixelDiscriminator": (lambda: fastp2p.PixelDiscriminator(6, ndf=4), "PixelGAN discriminator",
                           "PixelDiscriminator(input_nc=6, ndf=4, norm='batch')"),
}
PAIRS = [(loaded, saved) for loaded in NETWORKS for saved in NETWORKS if loaded != saved]


@pytest.mark.parametrize("loaded, saved", PAIRS, ids=[f"{s}-file-to-{l}" for l, s in PAIRS])
def test_another_networks_file_names_the_file_what_it_holds_and_who_loads_it(
        tmp_path, loaded, saved):
    build, kind, config = NETWORKS[saved]
    path = tmp_path / "latest_net_X.pth"
    torch.save(build().state_dict(), path)
    with pytest.raises(ValueError) as error:
        getattr(fastp2p, loaded).from_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {str(path)!r}: it holds no {loaded} (")
    assert message.endswith(f" but looks like a {kind}, {config}; load it with "
                            f"fastp2p.{saved}.from_checkpoint")
    # a state_dict given instead of a path
    with pytest.raises(ValueError, match=f"^the state_dict: it holds no {loaded} "):
        getattr(fastp2p, loaded).from_checkpoint(build().state_dict())


def test_a_file_of_no_network_names_the_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError) as error:
        fastp2p.UNet.from_checkpoint(path)
    assert str(error.value) == (
        f"checkpoint {str(path)!r}: no UNet configuration could be read off its keys (no U-Net "
        "outermost conv key 'model.model.0.weight')")


def test_loading_a_discriminators_state_into_a_unet_names_the_class_that_loads_it():
    """load_state_dict advised UNet.from_checkpoint(path), which cannot load the file either."""
    with pytest.raises(ValueError) as error:
        fastp2p.UNet(3, 3, 5, ngf=4).load_state_dict(
            fastp2p.PatchDiscriminator(6, ndf=4).state_dict())
    first_line, details = str(error.value).split("\n")
    assert first_line.startswith("checkpoint does not fit UNet(")
    assert first_line.endswith(
        "but looks like a PatchGAN discriminator, PatchDiscriminator(input_nc=6, ndf=4, "
        "n_layers=3, norm='batch'); load it with fastp2p.PatchDiscriminator.from_checkpoint.")
    assert "UNet.from_checkpoint" not in first_line
    assert details.startswith("details: ")
