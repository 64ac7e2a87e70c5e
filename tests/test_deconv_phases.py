"""The transposed convolution as its four phases' packed convolution (fastp2p.ops.deconv_phases),
issue 15 item 4: against float64 torch on random data, written into a NaN-poisoned channel slice
of a wider buffer with each consumer activation, from a module's weight and from a BatchNorm
fold; where it applies; and the U-Net running it on every transposed convolution."""
import copy
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastp2p.nn import folding
from fastp2p.ops import conv_transpose, deconv_phases, onednn_packed
from fastp2p.ops.stand_ins import PHASES, stand_in
from helpers.network_checks import unet_pair
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, assert_close

pytestmark = pytest.mark.skipif(not onednn_packed.available(),
                                reason="this torch build has no oneDNN packed convolution ops")
CL = torch.channels_last
ACTIVATIONS = {"none": lambda y: y, "relu": torch.relu, "tanh": torch.tanh}

# (in, out, bias, input shape): the U-Net's 1x1 innermost input, a 3-channel output layer,
# non-square and odd sizes, a batch of 3.
LAYERS = [(8, 8, True, (1, 8, 1, 1)), (16, 3, True, (2, 16, 8, 8)),
          (6, 5, False, (1, 6, 3, 5)), (4, 7, True, (3, 4, 6, 2))]


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 1.3 + 0.2


def _layer(c_in, c_out, bias, seed=0):
    torch.manual_seed(seed)
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    with torch.no_grad():
        conv.weight.mul_(3)  # away from init's small values
        if bias:
            conv.bias.normal_()
    return conv


def _float64(conv, x):
    bias = None if conv.bias is None else conv.bias.double()
    return F.conv_transpose2d(x.double(), conv.weight.double(), bias, 2, 1)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("c_in, c_out, bias, shape", LAYERS, ids=str)
def test_phases_written_into_a_slice_match_float64(c_in, c_out, bias, shape, activation, layout,
                                                   poisoned):
    conv = _layer(c_in, c_out, bias)
    phased = stand_in(conv, conv.weight, conv.bias, PHASES, shape)
    assert type(phased) is deconv_phases.PhasedConvTranspose2d
    x = _random(shape, 1).contiguous(memory_format=layout)
    n, _, h, w = shape
    buffer = torch.empty(n, 2 + c_out, 2 * h, 2 * w, memory_format=CL)  # NaN: poisoned
    with torch.no_grad():
        out = deconv_phases.run_into(phased, x, buffer[:, 2:], activation)
        plain = conv_transpose.conv_transpose2d(phased, x)
    expected = ACTIVATIONS[activation](_float64(conv, x))
    assert out.data_ptr() == buffer[:, 2:].data_ptr()
    assert_close(buffer[:, 2:], expected, FP32_SINGLE_OP, f"{activation} into a slice")
    assert torch.isnan(buffer[:, :2]).all()  # nothing written outside the slice
    assert_close(plain, _float64(conv, x), FP32_SINGLE_OP, "run")
    assert plain.is_contiguous(memory_format=CL)


def test_each_phase_tap_is_its_kernel_element():
    """Tap (a, b) of phase (r, s), output channel c: kernel element (3 - r - 2a, 3 - s - 2b)."""
    weight = _random((5, 3, 4, 4), 3)
    phases = deconv_phases.phase_weight(weight)
    assert phases.shape == (12, 5, 2, 2) and phases.is_contiguous(memory_format=CL)
    for r, s, c, a, b in itertools.product(range(2), range(2), range(3), range(2), range(2)):
        assert torch.equal(phases[(2 * r + s) * 3 + c, :, a, b],
                           weight[:, c, 3 - r - 2 * a, 3 - s - 2 * b]), (r, s, c, a, b)


def test_a_batchnorm_fold_in_the_phase_form_is_the_conv_then_the_norm():
    conv, norm = _layer(6, 4, True), nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        norm.running_mean.normal_(), norm.running_var.uniform_(0.5, 2)
        norm.weight.normal_(), norm.bias.normal_()
    x = _random((2, 6, 4, 4), 2).contiguous(memory_format=CL)
    folded = folding.folded_conv(conv, norm, PHASES, x.shape)
    assert type(folded) is deconv_phases.PhasedConvTranspose2d
    with torch.no_grad():
        out = conv_transpose.conv_transpose2d(folded, x)
    expected = copy.deepcopy(nn.Sequential(conv, norm)).double()(x.double())
    assert_close(out, expected, FP32_SINGLE_OP, "fold")


def test_applies_only_to_the_unets_transposed_convolution_on_cpu_float32():
    x = torch.zeros(1, 4, 8, 8)
    assert deconv_phases.applies(nn.ConvTranspose2d(4, 6, 4, 2, 1), x)
    assert deconv_phases.applies(nn.ConvTranspose2d(4, 6, 4, 2, 1, bias=False), x)
    for other in (nn.ConvTranspose2d(4, 6, 3, 2, 1), nn.ConvTranspose2d(4, 6, 4, 1, 1),
                  nn.ConvTranspose2d(4, 6, 4, 2, 0), nn.ConvTranspose2d(4, 6, 4, 2, 1, 1),
                  nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=2), nn.Conv2d(4, 6, 4, 2, 1),
                  nn.ConvTranspose2d(4, 6, 4, 2, 1, dilation=2)):
        assert not deconv_phases.applies(other, x), other
    assert not deconv_phases.applies(nn.ConvTranspose2d(4, 6, 4, 2, 1), x.bfloat16())
    with deconv_phases.phases_disabled():
        assert not deconv_phases.applies(nn.ConvTranspose2d(4, 6, 4, 2, 1), x)
    with onednn_packed.packing_disabled():
        assert not deconv_phases.applies(nn.ConvTranspose2d(4, 6, 4, 2, 1), x)


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "channels_last"])
def test_the_unet_in_the_phase_form_matches_the_reference(norm, layout, monkeypatch, poisoned):
    """Every transposed convolution in the phase form (eval: BatchNorm folded into it, the
    decoder's concatenations written by the interleave, the output's tanh too)."""
    monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, "phases")
    ran = []
    run_into = deconv_phases.run_into
    monkeypatch.setattr(deconv_phases, "run_into",
                        lambda conv, *a: ran.append(conv) or run_into(conv, *a))
    ours, theirs = unet_pair(norm, num_downs=5, ngf=4)
    ours.eval(), theirs.eval()
    x = (_random((2, 3, 32, 32), 4).clamp(-1, 1)).contiguous(memory_format=layout)
    with torch.no_grad():
        out, expected = ours(x), copy.deepcopy(theirs).double()(x.double())
    assert_close(out, expected, FP32_NETWORK, norm)
    assert out.stride() == expected.stride()  # the reference's format (InstanceNorm: NCHW)
    decoder_convs = [m for m in ours.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ran) == len(decoder_convs)
