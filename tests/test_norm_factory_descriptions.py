"""print(model), config() and the checkpoint messages describe any norm factory the networks
accept, without building it for a channel count it refuses: describe_norm_layer probed it with
one channel, and ``functools.partial(nn.GroupNorm, 4)`` (a legitimate factory: the networks'
channel counts are multiples of 4) raised ValueError out of repr()."""
import functools

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn.norm import describe_norm_layer

GROUP_NORM = functools.partial(nn.GroupNorm, 4)


def _refuses_one_channel(channels):
    if channels == 1:
        raise RuntimeError("needs more channels")
    return nn.BatchNorm2d(channels, affine=False)


@pytest.mark.parametrize("build", [
    lambda: fastp2p.PatchDiscriminator(6, 8, 3, norm_layer=GROUP_NORM),
    lambda: fastp2p.PixelDiscriminator(6, 8, norm_layer=GROUP_NORM),
    lambda: fastp2p.UNet(3, 4, 5, 4, norm_layer=GROUP_NORM),  # (output_nc: its up norm)
], ids=["patch", "pixel", "unet"])
def test_repr_and_config_of_a_group_norm_network(build):
    net = build()
    assert net.config()["norm"] == "GroupNorm(4)"
    assert "norm=GroupNorm(4)" in repr(net)
    assert "norm='GroupNorm(4)'" in net.config_string()


def test_a_network_whose_checkpoint_does_not_fit_names_the_group_norm():
    net = fastp2p.PatchDiscriminator(6, 8, 3, norm_layer=GROUP_NORM)
    with pytest.raises(ValueError,
                       match=r"does not fit PatchDiscriminator\(.*norm='GroupNorm\(4\)'"):
        net.load_state_dict(fastp2p.PatchDiscriminator(6, 16, 3).state_dict())


@pytest.mark.parametrize("factory,expected", [
    (GROUP_NORM, "GroupNorm(4)"),
    (functools.partial(nn.GroupNorm, 4, affine=False), "GroupNorm(4, affine=False)"),
    (functools.partial(functools.partial(nn.GroupNorm, 2), eps=1e-3), "GroupNorm(2, eps=0.001)"),
    (_refuses_one_channel, "_refuses_one_channel"),
    (nn.BatchNorm2d, "batch"),
    (functools.partial(nn.InstanceNorm2d, affine=True), "InstanceNorm2d(affine=True)"),
])
def test_describe_norm_layer_never_raises(factory, expected):
    assert describe_norm_layer(factory) == expected


def test_a_group_norm_network_still_runs_its_reference_forward():
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(6, 8, 3, norm_layer=GROUP_NORM)
    assert net(torch.randn(1, 6, 64, 64)).shape == (1, 1, 6, 6)
