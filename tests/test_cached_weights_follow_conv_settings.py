"""The cached stand-ins of CPU float32 inference (BatchNorm folds, weights in another layout or
packed for oneDNN: fastp2p.nn.folding) follow a convolution's settings changed after the first
eval no-grad call: the output is the reference module's with the same change (float64, same
weights, random data and BatchNorm statistics), shape included."""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from helpers.network_checks import random_images, randomize_batchnorms
from helpers.tolerances import FP32_NETWORK, assert_close


def _patch_pair():
    torch.manual_seed(0)
    theirs = reference.NLayerDiscriminator(6, 8, 3)
    ours = fastp2p.PatchDiscriminator(6, 8, 3, norm="batch")
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _unet_pair():
    torch.manual_seed(0)
    theirs = reference.UnetGenerator(3, 3, 5, 4, reference.get_norm_layer("batch"))
    ours = fastp2p.UNet(3, 3, 5, 4, norm="batch")
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _conv_before_second_batchnorm(net):  # folded into a stand-in
    return net.model[5]


def _first_unet_conv(net):  # no norm after it: its weight in the computing layout
    return net.model.model[0]


def _last_unet_deconv(net):  # a transposed convolution: its measured form's weight
    return net.model.model[3]


def _inner_unet_conv(net):  # a down convolution followed by a BatchNorm: folded
    return net.model.model[1].model[1]


CHANGES = {
    "padding_mode reflect": lambda conv: setattr(conv, "padding_mode", "reflect"),
    "padding_mode circular": lambda conv: setattr(conv, "padding_mode", "circular"),
    "padding 2": lambda conv: setattr(conv, "padding", (2, 2)),
    "stride 1": lambda conv: setattr(conv, "stride", (1, 1)),
    "dilation 2": lambda conv: setattr(conv, "dilation", (2, 2)),
    # The U-Net's levels must keep their sizes (the skip concatenations): settings that do.
    "dilation 2 padding 3": lambda conv: (setattr(conv, "dilation", (2, 2)),
                                          setattr(conv, "padding", (3, 3))),
    "output_padding 1": lambda conv: setattr(conv, "output_padding", (1, 1)),
}
CASES = [
    *[(_patch_pair, _conv_before_second_batchnorm, change) for change in
      ("padding_mode reflect", "padding 2", "stride 1", "dilation 2")],
    *[(_unet_pair, _first_unet_conv, change) for change in
      ("padding_mode reflect", "padding_mode circular", "dilation 2 padding 3")],
    (_unet_pair, _inner_unet_conv, "padding_mode reflect"),
    (_unet_pair, _inner_unet_conv, "dilation 2 padding 3"),
    (_unet_pair, _last_unet_deconv, "output_padding 1"),
    (_unet_pair, _last_unet_deconv, "padding 2"),
]


@pytest.mark.parametrize("input_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("make_pair,layer,change", CASES,
                         ids=[f"{p.__name__[1:]}-{l.__name__[1:]}-{c}" for p, l, c in CASES])
def test_a_setting_changed_after_the_first_call_is_used(make_pair, layer, change, input_format):
    ours, theirs = make_pair()
    randomize_batchnorms(ours, 5).eval()
    theirs.load_state_dict(ours.state_dict())
    theirs64 = copy.deepcopy(theirs).double().eval()
    channels = 6 if isinstance(ours, fastp2p.PatchDiscriminator) else 3
    x = random_images(64)[:, :1].expand(-1, channels, -1, -1).contiguous(
        memory_format=input_format) + torch.randn(2, channels, 64, 64) * 0.1
    with torch.no_grad():
        assert_close(ours(x), theirs64(x.double()), FP32_NETWORK, "before the change")
        for net in (ours, theirs64):
            CHANGES[change](layer(net))
        expected = theirs64(x.double())
        assert_close(ours(x), expected, FP32_NETWORK, f"after {change}")


def test_reflect_padding_uses_the_padding_the_module_was_built_with():
    """torch pads a non-zero padding mode by ``_reversed_padding_repeated_twice``, fixed at
    construction: a stand-in keeps the module's (a new module would take the new padding)."""
    ours, theirs = _patch_pair()
    ours.eval()
    theirs64 = copy.deepcopy(theirs).double().eval()
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        ours(x)
        for net in (ours, theirs64):
            conv = _conv_before_second_batchnorm(net)
            conv.padding_mode, conv.padding = "reflect", (2, 2)
        expected = theirs64(x.double())
        assert_close(ours(x), expected, FP32_NETWORK, "reflect with padding changed")


def test_a_plain_conv_stand_in_copies_the_modules_settings():
    """folding.conv_in_layout directly: the channels-last copy of a conv whose padding mode
    changes between two calls."""
    from fastp2p.nn.folding import conv_in_layout
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        conv_in_layout(conv, torch.channels_last)(x)
        conv.padding_mode = "circular"
        assert_close(conv_in_layout(conv, torch.channels_last)(x), conv(x), 1e-6, "circular")
