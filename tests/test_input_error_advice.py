"""The networks' input errors say what to do: how to convert the dtype, how to fit the
channels, and the nearest size of this input that fits (QA r40 N1)."""
import re

import pytest
import torch

import fastp2p


@pytest.fixture(scope="module")
def unet():
    return fastp2p.UNet(3, 3, 5, ngf=8)


def test_integer_input_is_told_to_convert_and_scale(unet):
    with pytest.raises(ValueError, match=re.escape("got torch.uint8; convert it with .float() "
                                                   "and scale it to [-1, 1]")):
        unet(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("channels, advice", [
    (4, "keep the first 3 with x[:, :3] (e.g. an RGBA image's alpha channel dropped), or build "
        "UNet with input_nc=4"),
    (1, "repeat the one channel with x.expand(-1, 3, -1, -1) (a grayscale image), or build "
        "UNet with input_nc=1"),
    (2, "; build UNet with input_nc=2")])
def test_channel_count_advice(unet, channels, advice):
    with pytest.raises(ValueError, match=re.escape(advice)):
        unet(torch.zeros(1, channels, 32, 32))


def test_discriminator_channel_advice_names_its_class():
    with pytest.raises(ValueError, match=re.escape("build PatchDiscriminator with input_nc=3")):
        fastp2p.PatchDiscriminator(6, ndf=4, n_layers=1)(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("num_downs, size, suggested", [
    (5, (64, 48), "64x64"), (5, (48, 70), "64x64"), (5, (10, 100), "32x96"),
    (8, (300, 500), "256x512")])
def test_size_advice_is_the_nearest_valid_size_of_the_input(num_downs, size, suggested):
    net = fastp2p.UNet(3, 3, num_downs, ngf=8)
    with pytest.raises(ValueError, match=re.escape(f"got {size[0]}x{size[1]}; resize or crop "
                                                   f"the input (e.g. to {suggested})")):
        net(torch.zeros(1, 3, *size))
