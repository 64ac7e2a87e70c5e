"""torch.save(model) and pickle of the networks built with any norm factory the reference takes,
a lambda or local function included (the reference repository's own get_norm_layer("none")
returns a local function): the networks kept the factory as an attribute for config(), and
pickling it failed (PicklingError, "Can't pickle local object"). They keep its description,
so config() gives what it gave, and a network built from its config() is the same network."""
import functools
import io

import pytest
import torch
import torch.nn as nn

import fastp2p


def _reference_get_norm_layer_none():
    """As the reference repository's models/networks.py returns it for --norm none."""
    def norm_layer(num_features):
        return nn.Identity()
    return norm_layer


FACTORIES = {
    "lambda batch": (lambda c: nn.BatchNorm2d(c), "batch"),
    "local function none": (_reference_get_norm_layer_none(), "none"),
    # (convs without bias, unlike norm "instance": test_norm_description_round_trip)
    "lambda instance": (lambda c: nn.InstanceNorm2d(c), "<lambda>"),
    "lambda group norm": (lambda c: nn.GroupNorm(1, c), "<lambda>"),
    "partial": (functools.partial(nn.InstanceNorm2d, affine=True), "InstanceNorm2d(affine=True)"),
}
NETWORKS = {
    "UNet": (lambda nl: fastp2p.UNet(3, 3, 5, 4, nl), (1, 3, 32, 32)),
    "PatchDiscriminator": (lambda nl: fastp2p.PatchDiscriminator(6, 4, 2, nl), (1, 6, 32, 32)),
    "PixelDiscriminator": (lambda nl: fastp2p.PixelDiscriminator(6, 4, nl), (1, 6, 16, 16)),
}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("network", NETWORKS)
def test_torch_save_of_the_whole_network(network, factory):
    build, shape = NETWORKS[network]
    norm_layer, description = FACTORIES[factory]
    torch.manual_seed(0)
    net = build(norm_layer).eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)  # after a call too: what it caches must pickle as well
    assert net.config()["norm"] == description
    saved = io.BytesIO()
    torch.save(net, saved)
    saved.seek(0)
    loaded = torch.load(saved, weights_only=False)
    assert loaded.config() == net.config()
    assert repr(loaded) == repr(net)
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("factory", ["lambda batch", "local function none"])
def test_a_network_built_from_its_config_is_the_same_network(network, factory):
    """A network built from a factory describes it as the norm= that builds the same layers."""
    build, _ = NETWORKS[network]
    net = build(FACTORIES[factory][0])
    rebuilt = type(net)(**net.config())
    assert rebuilt.config() == net.config()
    assert repr(rebuilt) == repr(net)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()}
