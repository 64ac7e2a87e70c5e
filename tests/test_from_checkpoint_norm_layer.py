"""from_checkpoint with a norm_layer= override: the factory replaces the norm read off the keys
(it raised "give either norm= ... or norm_layer=..., not both" though only norm_layer was given);
and where the configuration read off the keys is what fails, the message says what the keys
cannot tell (the norm's settings) and suggests norm_layer=, instead of recommending
from_checkpoint(path) from inside from_checkpoint."""
import functools

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn.norm import describe_norm_layer

BN, IN = nn.BatchNorm2d, nn.InstanceNorm2d
# Norm factories other than the named three whose settings the keys tell (affine weights,
# running statistics, and the convolution biases the reference gives before an InstanceNorm).
TOLD = {
    "instance affine": functools.partial(IN, affine=True),
    "batch no affine": functools.partial(BN, affine=False),
    "instance tracking": functools.partial(IN, track_running_stats=True),
    "instance affine tracking": functools.partial(IN, affine=True, track_running_stats=True),
}
# ... and whose settings they do not tell (affine weights alone: the file looks like norm none).
UNTOLD = {
    "batch no stats": functools.partial(BN, track_running_stats=False),
    "group": functools.partial(nn.GroupNorm, 1),
}
FACTORIES = {**TOLD, **UNTOLD}
NETWORKS = {
    "UNet": (fastp2p.UNet, lambda nl: reference.UnetGenerator(2, 3, 6, 4, nl),
             lambda x: x[:, :2].repeat(1, 1, 2, 2)),
    "PatchDiscriminator": (fastp2p.PatchDiscriminator,
                           lambda nl: reference.NLayerDiscriminator(6, 4, 3, nl),
                           lambda x: x.repeat(1, 2, 2, 2)),
    "PixelDiscriminator": (fastp2p.PixelDiscriminator,
                           lambda nl: reference.PixelDiscriminator(6, 4, nl),
                           lambda x: x.repeat(1, 2, 1, 1)),
}


def _saved(build_reference, norm_layer):
    torch.manual_seed(1)
    net = build_reference(norm_layer)
    for module in net.modules():  # statistics that differ from a fresh module's
        if getattr(module, "running_mean", None) is not None:
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
    return net.eval()


def _check_loads_as_saved(network, saved_with, tmp_path, **overrides):
    """A file of the reference network built with the norm factory ``saved_with`` loads
    through from_checkpoint(path, **overrides) into the same network: entries and outputs."""
    cls, build_reference, image = NETWORKS[network]
    theirs = _saved(build_reference, saved_with)
    path = tmp_path / "net.pth"
    torch.save(theirs.state_dict(), path)
    ours = cls.from_checkpoint(path, **overrides).eval()
    assert ours.config()["norm"] == describe_norm_layer(saved_with)
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
    x = image(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("factory", FACTORIES)
def test_a_norm_layer_override_builds_and_loads_the_saved_network(network, factory, tmp_path):
    _check_loads_as_saved(network, FACTORIES[factory], tmp_path, norm_layer=FACTORIES[factory])


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("factory", TOLD)
def test_a_norm_the_keys_tell_is_built_without_norm_layer(network, factory, tmp_path):
    """These files needed norm_layer= before stop 55: the keys were read as "batch" or
    "instance", whose networks do not fit them."""
    assert describe_norm_layer(TOLD[factory]) not in ("batch", "instance", "none")
    _check_loads_as_saved(network, TOLD[factory], tmp_path)


@pytest.mark.parametrize("network", NETWORKS)
def test_a_norm_given_replaces_the_norm_the_keys_tell(network):
    """norm= against a told norm builds what was given (and says it does not fit)."""
    cls, build_reference, _ = NETWORKS[network]
    state = _saved(build_reference, TOLD["instance affine"]).state_dict()
    with pytest.raises(ValueError, match=r"with norm= as given: check norm="):
        cls.from_checkpoint(state, norm="instance")


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("factory", UNTOLD)
def test_when_the_inferred_norm_fails_the_message_suggests_norm_layer(network, factory):
    cls, build_reference, _ = NETWORKS[network]
    state = _saved(build_reference, UNTOLD[factory]).state_dict()
    with pytest.raises(ValueError) as raised:
        cls.from_checkpoint(state)
    first_line, details = str(raised.value).split("\n", 1)
    assert first_line.startswith(f"the state_dict does not fit {network}(")
    assert "the configuration inferred from it" in first_line
    assert "type or settings cannot be read off the keys" in first_line
    assert "norm_layer=functools.partial(nn.BatchNorm2d, track_running_stats=False)" in first_line
    assert "from_checkpoint(path)" not in first_line
    assert details.startswith("details: ")


def test_a_wrong_norm_layer_override_is_named_as_given(tmp_path):
    state = _saved(NETWORKS["UNet"][1], TOLD["instance affine"]).state_dict()
    path = tmp_path / "g.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as raised:
        fastp2p.UNet.from_checkpoint(path, norm_layer=BN)
    first_line = str(raised.value).splitlines()[0]
    assert first_line.startswith(f"checkpoint {str(path)!r} does not fit UNet(")
    assert "with norm_layer= as given" in first_line and "check norm_layer=" in first_line


def test_norm_and_norm_layer_both_given_are_still_refused():
    state = fastp2p.UNet(3, 3, 5, 4).state_dict()
    with pytest.raises(ValueError, match="not both"):
        fastp2p.UNet.from_checkpoint(state, norm="batch", norm_layer=BN)


def test_a_plain_load_state_dict_keeps_its_advice():
    """load_state_dict (not from_checkpoint) still points at from_checkpoint(path)."""
    with pytest.raises(ValueError, match=r"the file looks like UNet\(.*ngf=8.*from_checkpoint"):
        fastp2p.UNet(3, 3, 5, ngf=4).load_state_dict(fastp2p.UNet(3, 3, 5, ngf=8).state_dict())


def test_norm_layer_none_keeps_the_inferred_norm():
    state = fastp2p.UNet(3, 3, 5, 4, norm="instance").state_dict()
    assert fastp2p.UNet.from_checkpoint(state, norm_layer=None).config()["norm"] == "instance"
