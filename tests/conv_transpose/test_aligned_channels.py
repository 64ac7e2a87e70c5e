"""The channel-padded convolutions of fastp2p.ops.aligned_channels against the modules themselves,
in float64 on the CPU (forward, input and parameter gradients, memory format), and the routing:
padding only on GPUs and only for channel counts that are not multiples of 8."""
import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.ops import aligned_channels
from fastp2p.ops.aligned_channels import (conv2d, conv2d_channel_padded,
                                          conv_transpose2d_channel_padded)
from fastp2p.ops.conv_transpose import conv_transpose2d
from helpers.tolerances import FP32_SINGLE_OP, assert_close

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def _random_module(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _compare(module, padded_forward, x, output_channels):
    """padded_forward(module, x) vs module(x): output, grad x, every parameter grad."""
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, expected = padded_forward(module, x_ours), module(x_ref)
    assert ours.shape == expected.shape and ours.shape[1] == output_channels
    weight = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64)
    grads_ours = torch.autograd.grad((ours * weight).sum(), [x_ours, *module.parameters()])
    grads_ref = torch.autograd.grad((expected * weight).sum(), [x_ref, *module.parameters()])
    assert_close(ours, expected, FP32_SINGLE_OP, "output")
    for name, got, want in zip(["x", "weight", "bias"], grads_ours, grads_ref):
        assert got.shape == want.shape
        assert_close(got, want, FP32_SINGLE_OP, f"grad {name}")
    return ours


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("in_channels", [3, 6, 13])
def test_conv2d_with_padded_input_channels_is_the_same_function(layout, in_channels):
    conv = _random_module(nn.Conv2d(in_channels, 16, 4, 2, 1).double(), seed=in_channels)
    x = torch.randn(2, in_channels, 10, 14, dtype=torch.float64).contiguous(
        memory_format=LAYOUTS[layout])
    out = _compare(conv, conv2d_channel_padded, x, 16)
    if layout == "nhwc":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("out_channels,bias", [(3, True), (6, False), (13, True)])
def test_conv_transpose2d_with_padded_output_channels_is_the_same_function(layout, out_channels,
                                                                           bias):
    up = _random_module(nn.ConvTranspose2d(16, out_channels, 4, 2, 1, bias=bias).double(),
                        seed=out_channels)
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64).contiguous(memory_format=LAYOUTS[layout])
    _compare(up, conv_transpose2d_channel_padded, x, out_channels)


def test_padding_only_on_gpus_and_only_for_unaligned_channel_counts(monkeypatch):
    calls = []
    monkeypatch.setattr(aligned_channels, "conv2d_channel_padded",
                        lambda module, x: calls.append(module.in_channels) or module(x))
    x3, x8 = torch.randn(1, 3, 8, 8), torch.randn(1, 8, 8, 8)
    conv2d(nn.Conv2d(3, 8, 3), x3)  # CPU: the module itself
    assert calls == []
    assert aligned_channels.pads_input(nn.Conv2d(3, 8, 3), x3.to("meta")) is False
    gpu = type("GpuTensor", (), {"is_cuda": True})()  # what the rule reads of a tensor
    assert aligned_channels.pads_input(nn.Conv2d(3, 8, 3), gpu)
    assert aligned_channels.pads_input(nn.Conv2d(6, 8, 3), gpu)
    assert not aligned_channels.pads_input(nn.Conv2d(8, 8, 3), gpu)
    assert not aligned_channels.pads_input(nn.Conv2d(64, 8, 3), gpu)
    assert not aligned_channels.pads_input(nn.Conv2d(6, 6, 3, groups=3), gpu)
    assert not aligned_channels.pads_input(nn.Conv2d(3, 8, 3, padding=1,
                                                     padding_mode="reflect"), gpu)
    assert aligned_channels.pads_output(nn.ConvTranspose2d(128, 3, 4, 2, 1), gpu)
    assert not aligned_channels.pads_output(nn.ConvTranspose2d(128, 64, 4, 2, 1), gpu)
    assert conv2d(nn.Conv2d(8, 8, 3), x8).shape == (1, 8, 6, 6)


def test_networks_route_their_image_side_layers_through_it(monkeypatch):
    """With the rule forced on (a CPU stands in for the GPU), the U-Net's first convolution, its
    last transposed convolution and the PatchGAN's first convolution are padded, and the
    networks compute the same outputs (float64, through the reference norm math)."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    torch.manual_seed(0)
    unet = fastp2p.UNet(3, 3, 5, ngf=8, norm="batch").double()
    patch = fastp2p.PatchDiscriminator(6, ndf=8, n_layers=2, norm="batch").double()
    x, pair = torch.randn(2, 3, 32, 32, dtype=torch.float64), \
        torch.randn(2, 6, 32, 32, dtype=torch.float64)
    expected = unet(x), patch(pair)
    padded = []
    monkeypatch.setattr(aligned_channels, "_applies",
                        lambda module, t, channels: padded.append(channels) or channels % 8 != 0)
    got = unet(x), patch(pair)
    assert 3 in padded and 6 in padded
    assert [c for c in padded if c % 8] == [3, 3, 6]
    for a, b in zip(got, expected):
        assert_close(a, b, FP32_SINGLE_OP, "network output")


def test_conv_transpose_router_keeps_the_cpu_gemm_form_first():
    up = nn.ConvTranspose2d(16, 3, 4, 2, 1)
    with torch.no_grad():
        out = conv_transpose2d(up, torch.randn(1, 16, 4, 4))
    assert out.shape == (1, 3, 8, 8)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "conv_transpose"])
def test_under_autocast_it_pads_in_the_computed_dtype(transposed, monkeypatch):
    """Under autocast the padding is applied after the cast (half the bytes of padding float32):
    same dtype out and the same function as the module under the same autocast."""
    padded_dtypes = []
    pad = aligned_channels._zero_pad_dim1
    monkeypatch.setattr(aligned_channels, "_zero_pad_dim1",
                        lambda t, extra: padded_dtypes.append(t.dtype) or pad(t, extra))
    torch.manual_seed(2)
    if transposed:
        module, padded, channels = nn.ConvTranspose2d(16, 3, 4, 2, 1), \
            conv_transpose2d_channel_padded, 3
        x = torch.randn(2, 16, 6, 6)
    else:
        module, padded, channels = nn.Conv2d(3, 16, 4, 2, 1), conv2d_channel_padded, 16
        x = torch.randn(2, 3, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, expected = padded(module, x), module(x)
    assert padded_dtypes and set(padded_dtypes) == {torch.bfloat16}
    assert ours.dtype == expected.dtype == torch.bfloat16 and ours.shape[1] == channels
    assert_close(ours.float(), expected.float(), 1e-2, "bf16 output")
