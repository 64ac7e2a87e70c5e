"""A BatchNorm of one channel returns NCHW whatever its input (its input is dense in both
formats, and torch's batch_norm writes the format it suggests for it, NCHW), as InstanceNorm
does: a U-Net with ngf=1 has one at its second level's output, so the reference returns NCHW
for a channels-last input, and the fused forward returned channels-last
(fastp2p.nn.output_format.returns_nchw). Strides and values against the reference."""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn.output_format import (CHANNELS_LAST, CONTIGUOUS, returns_nchw,
                                      sequential_output_format)
from helpers.tolerances import FP32_NETWORK, assert_close

CL = torch.channels_last


@pytest.mark.parametrize("norm,ngf,output_nc", [("batch", 1, 3), ("batch", 1, 1),
                                                ("instance", 1, 3), ("none", 1, 3),
                                                ("batch", 2, 3)])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_a_narrow_unet_returns_the_reference_strides(norm, ngf, output_nc, train, grad):
    """A channels-last input (an NCHW one: tests/test_output_strides_all_norms.py)."""
    torch.manual_seed(0)
    theirs = reference.UnetGenerator(3, output_nc, 5, ngf, reference.get_norm_layer(norm))
    ours = fastp2p.UNet(3, output_nc, 5, ngf, norm=norm)
    ours.load_state_dict(theirs.state_dict())
    theirs64 = copy.deepcopy(theirs).double()
    for net in (ours, theirs, theirs64):
        net.train(train)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x = x.contiguous(memory_format=CL)
    with torch.set_grad_enabled(grad):
        out, expected = ours(x), theirs(x)
        expected64 = theirs64(x.double())
    assert out.stride() == expected.stride(), f"{out.stride()} != {expected.stride()}"
    assert_close(out, expected64, FP32_NETWORK, f"{norm} ngf={ngf}")


def test_returns_nchw():
    assert returns_nchw(nn.InstanceNorm2d(4)) and returns_nchw(nn.InstanceNorm2d(1))
    assert returns_nchw(nn.BatchNorm2d(1)) and not returns_nchw(nn.BatchNorm2d(2))
    assert not returns_nchw(nn.Identity()) and not returns_nchw(nn.Conv2d(1, 1, 1))


def test_a_one_channel_batch_norm_in_a_stack_makes_its_output_nchw():
    """The rule as the discriminator stacks use it; torch's own output for comparison."""
    seq = nn.Sequential(nn.Conv2d(3, 1, 3), nn.BatchNorm2d(1), nn.LeakyReLU(0.2),
                        nn.Conv2d(1, 2, 1))
    x = torch.rand(2, 3, 8, 8).contiguous(memory_format=CL)
    assert seq(x).is_contiguous()
    assert sequential_output_format(seq, x) is CONTIGUOUS
    assert sequential_output_format(seq[2:], seq[:2](x)) is CONTIGUOUS
    assert sequential_output_format(seq[:1], x) is CHANNELS_LAST
