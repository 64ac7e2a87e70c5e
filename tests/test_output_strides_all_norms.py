"""The drop-in networks return the strides the reference modules return, for every norm
(torch's InstanceNorm returns NCHW whatever its input, so an instance-norm network's output is
NCHW unless its last convolution's weight is channels-last), train and eval, with and without
gradients, for inputs of every layout, modules in either format or with one convolution's
weight alone channels-last, and a one-channel output; values against the float64 reference.
tests/test_fused_forward_fidelity.py has the BatchNorm networks' layouts."""
import copy

import pytest
import torch
import torch.nn as nn

from fastp2p import reference
from helpers.network_checks import network_pair, random_images
from helpers.tolerances import FP32_NETWORK, assert_close

CL = torch.channels_last
INPUTS = {
    "nchw": lambda: random_images(32),
    "channels-last": lambda: random_images(32).contiguous(memory_format=CL),
    "channels-last sliced": lambda: random_images(64).contiguous(memory_format=CL)[..., ::2, ::2],
    "permuted": lambda: random_images(32).transpose(2, 3).contiguous().transpose(2, 3),
    "channels-last batch 1": lambda: random_images(32)[:1].contiguous(memory_format=CL),
}


def _check(ours, theirs, x, train, grad, what):
    theirs64 = copy.deepcopy(theirs).double()
    for net in (ours, theirs, theirs64):
        net.train(train)
    with torch.set_grad_enabled(grad):
        out, expected = ours(x), theirs(x)
        expected64 = theirs64(x.double())
    assert out.stride() == expected.stride(), f"{what}: {out.stride()} != {expected.stride()}"
    assert_close(out, expected64, FP32_NETWORK, what)


def _skip_batch_statistics_of_one_value(norm, train, x):
    if norm == "batch" and train and x.shape[0] == 1:
        pytest.skip("a training BatchNorm of the U-Net's 1x1 bottleneck at batch 1 has one value")


@pytest.mark.parametrize("kind", ["unet", "patch", "pixel"])
@pytest.mark.parametrize("norm", ["instance", "none"])
@pytest.mark.parametrize("module_format", [torch.contiguous_format, CL],
                         ids=["nchw_module", "channels_last_module"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("layout", INPUTS)
def test_the_output_has_the_reference_strides(kind, norm, module_format, train, grad, layout):
    ours, theirs = network_pair(kind, reference.get_norm_layer(norm))
    for net in (ours, theirs):
        net.to(memory_format=module_format)
    _check(ours, theirs, INPUTS[layout](), train, grad, f"{kind} {norm} {layout}")


def _convolutions(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _first(net):
    return _convolutions(net)[0]


def _last(net):  # the U-Net's output convolution is its outermost level's, listed second
    return net.model.model[3] if isinstance(net, reference.UnetGenerator) else \
        _convolutions(net)[-1]


def _middle(net):
    convolutions = _convolutions(net)
    return convolutions[len(convolutions) // 2]


@pytest.mark.parametrize("kind", ["unet", "patch", "pixel"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("which", [_first, _middle, _last], ids=["first", "middle", "last"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
def test_one_channels_last_weight(kind, norm, which, grad, layout):
    ours, theirs = network_pair(kind, reference.get_norm_layer(norm))
    for net in (ours, theirs):
        conv = which(net)
        conv.weight.data = conv.weight.data.contiguous(memory_format=CL)
    _check(ours, theirs, INPUTS[layout](), False, grad, f"{kind} {norm} {which.__name__}")


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("module_format", [torch.contiguous_format, CL],
                         ids=["nchw_module", "channels_last_module"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("layout", ["nchw", "channels-last", "channels-last batch 1"])
def test_a_one_channel_unet_output_has_the_reference_strides(norm, module_format, train, grad,
                                                               layout):
    x = INPUTS[layout]()
    _skip_batch_statistics_of_one_value(norm, train, x)
    ours, theirs = network_pair("unet", reference.get_norm_layer(norm), output_nc=1)
    for net in (ours, theirs):
        net.to(memory_format=module_format)
    _check(ours, theirs, x, train, grad, f"gray {norm} {layout}")
