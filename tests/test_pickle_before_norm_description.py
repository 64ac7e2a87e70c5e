"""A network pickled whole (torch.save(model)) by a fastp2p that kept the norm factory itself
as the attribute ``norm_layer`` (before 93b5b86, which keeps its description as ``norm``) loads
with config() and repr working: they read ``norm``, and raised AttributeError. The old pickle
is made the old way: the factory set as ``norm_layer`` and ``norm`` deleted before pickling,
the attributes such a network had."""
import functools

import pytest
import torch
import torch.nn as nn

from fastp2p import reference
from helpers.network_checks import TINY_NETWORKS, saved_and_loaded

FACTORIES = {
    "class": nn.BatchNorm2d,
    "partial": functools.partial(nn.InstanceNorm2d, affine=True),
    "reference batch": reference.get_norm_layer("batch"),
    "reference instance": reference.get_norm_layer("instance"),
    "reference none": reference.get_norm_layer("none"),
}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("network", TINY_NETWORKS)
def test_a_network_pickled_with_its_norm_factory_loads(network, factory):
    build, shape = TINY_NETWORKS[network]
    torch.manual_seed(0)
    net = build(FACTORIES[factory]).eval()
    config, text = net.config(), repr(net)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
    net.norm_layer = FACTORIES[factory]
    del net.norm
    loaded = saved_and_loaded(net)
    assert loaded.config() == config
    assert repr(loaded) == text
    assert not hasattr(loaded, "norm_layer")
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
