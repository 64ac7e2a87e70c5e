"""torch.save(model) and pickle of the networks built with any norm factory the reference takes,
a lambda or local function included (the reference repository's own get_norm_layer("none")
returns a local function): the networks kept the factory as an attribute for config(), and
pickling it failed (PicklingError, "Can't pickle local object"). They keep its description,
so config() gives what it gave, and a network built from its config() is the same network."""
import functools

import pytest
import torch
import torch.nn as nn

from helpers.network_checks import TINY_NETWORKS, saved_and_loaded


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


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("network", TINY_NETWORKS)
def test_torch_save_of_the_whole_network(network, factory):
    build, shape = TINY_NETWORKS[network]
    norm_layer, description = FACTORIES[factory]
    torch.manual_seed(0)
    net = build(norm_layer).eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)  # after a call too: what it caches must pickle as well
    assert net.config()["norm"] == description
    loaded = saved_and_loaded(net)
    assert loaded.config() == net.config()
    assert repr(loaded) == repr(net)
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


@pytest.mark.parametrize("network", TINY_NETWORKS)
@pytest.mark.parametrize("factory", ["lambda batch", "local function none"])
def test_a_network_built_from_its_config_is_the_same_network(network, factory):
    """A network built from a factory describes it as the norm= that builds the same layers."""
    build, _ = TINY_NETWORKS[network]
    net = build(FACTORIES[factory][0])
    rebuilt = type(net)(**net.config())
    assert rebuilt.config() == net.config()
    assert repr(rebuilt) == repr(net)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()}
