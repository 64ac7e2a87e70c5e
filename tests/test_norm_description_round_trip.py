"""config()'s norm names the network a factory builds, convolution biases included: the
reference gives convolutions a bias only where its factory is nn.InstanceNorm2d or a partial of
it, so a lambda building the same InstanceNorm2d builds a network without them. It was described
as "instance", and a network built from its config() had biases (keys) the original lacks; now it
is described by its readable form, which no constructor takes. Every description that is a norm
name rebuilds the same state_dict keys and shapes."""
import functools

import pytest
import torch.nn as nn

from fastp2p import reference
from fastp2p.ops.definitions import NORMS
from helpers.network_checks import TINY_NETWORKS

FACTORIES = {
    "batch class": (nn.BatchNorm2d, "batch"),
    "batch partial": (reference.get_norm_layer("batch"), "batch"),
    "batch lambda": (lambda c: nn.BatchNorm2d(c), "batch"),
    "instance class": (nn.InstanceNorm2d, "instance"),
    "instance partial": (reference.get_norm_layer("instance"), "instance"),
    "instance bare partial": (functools.partial(nn.InstanceNorm2d), "instance"),
    "instance lambda": (lambda c: nn.InstanceNorm2d(c), "<lambda>"),
    "none function": (reference.get_norm_layer("none"), "none"),
    "none lambda": (lambda c: nn.Identity(), "none"),
}


def _shapes(net):
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("network", TINY_NETWORKS)
def test_config_rebuilds_the_same_keys_or_names_no_norm(network, factory):
    norm_layer, description = FACTORIES[factory]
    build, _ = TINY_NETWORKS[network]
    net = build(norm_layer=norm_layer)
    config = net.config()
    assert config["norm"] == description
    if description in NORMS:
        assert _shapes(type(net)(**config)) == _shapes(net)
    else:  # the network norm="instance" builds has convolution biases this one lacks
        assert _shapes(build(norm="instance")).keys() > _shapes(net).keys()
        with pytest.raises(ValueError, match="norm must be one of"):
            type(net)(**config)
