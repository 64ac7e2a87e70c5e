"""fastp2p.ops.split_conv_backward on a CPU, with a recorder in place of the CUDA wgrad streams:
splitting ``convolution_backward`` by output mask gives the combined call's bits for every
convolution of the networks; the Function's forward and gradients are the plain call's
(float32, and bf16 under CPU autocast: the casts it does itself); its backward forks, runs
the wgrad on the side stream and the dgrad on the main stream, and joins, handing back the
wgrad tensors; and outside ``within`` (or where nothing can overlap) the plain call runs. The
engine-level checks are test_engine_split_conv_backward.py."""
import contextlib
import itertools

import pytest
import torch
import torch.nn as nn

from fastp2p.ops import split_conv_backward as split_conv
from fastp2p.ops.aligned_channels import (conv2d, conv2d_channel_padded,
                                          conv_transpose2d_channel_padded)
from fastp2p.ops.conv_transpose import conv_transpose2d
from helpers.stream_recorders import SPLIT_NODE, RecordingWgradStreams
from helpers.train_helpers import tiny_networks


def _layers_of_the_networks(norm):
    """(module, input) of every convolution of the tiny U-Net and PatchGAN (ngf 4, 32x32,
    batch 2, n_layers 2), as their forward calls them."""
    netG, netD = tiny_networks(norm=norm)
    seen = []

    def hook(module, args):
        seen.append((module, args[0].detach().clone()))

    handles = [m.register_forward_pre_hook(hook) for net in (netG, netD) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        fake_B = netG.model(torch.rand(2, 3, 32, 32) * 2 - 1)  # the module tree: every conv
        netD.model(torch.cat((torch.rand(2, 3, 32, 32), fake_B), 1))
    for handle in handles:
        handle.remove()
    return seen


def _conv_args(module):
    transposed = isinstance(module, nn.ConvTranspose2d)
    return (None if module.bias is None else [module.bias.shape[0]], list(module.stride),
            list(module.padding), list(module.dilation), transposed,
            list(module.output_padding) if transposed else [0, 0], 1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_split_backward_is_the_combined_call_bit_for_bit(threads, memory_format, dtype):
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # batch norm: convolutions before a norm have no bias; instance norm: all have one
        layers = _layers_of_the_networks("batch") + _layers_of_the_networks("instance")
        assert len(layers) == 2 * (10 + 4)
        generator = torch.Generator().manual_seed(0)
        for module, x in layers:
            x = x.to(dtype).contiguous(memory_format=memory_format)
            weight = module.weight.detach().to(dtype).contiguous(memory_format=memory_format)
            args = _conv_args(module)
            bias = None if module.bias is None else module.bias.detach().to(dtype)
            y = torch.ops.aten.convolution(x, weight, bias, *args[1:])
            grad = torch.randn(y.shape, generator=generator).to(dtype).contiguous(
                memory_format=memory_format)
            backward = torch.ops.aten.convolution_backward
            combined = backward(grad, x, weight, *args, [True, True, True])
            dgrad = backward(grad, x, weight, *args, [True, False, False])
            wgrad = backward(grad, x, weight, *args, [False, True, True])
            for split, whole in zip((dgrad[0], *wgrad[1:]), combined, strict=True):
                if whole is None:  # no bias
                    assert split is None and module.bias is None
                    continue
                assert torch.equal(split, whole) and split.stride() == whole.stride(), module
    finally:
        torch.set_num_threads(saved)


CONVS = {
    "conv": lambda: nn.Conv2d(8, 16, 4, 2, 1),
    "conv-transpose": lambda: nn.ConvTranspose2d(16, 8, 4, 2, 1),
    "patchgan-stride-1": lambda: nn.Conv2d(16, 1, 4, 1, 1),
}


def _run(route, module, x, streams=None):
    """(output, x.grad, weight.grad, bias.grad) of ``route(module, x)`` inside ``within``."""
    x = x.detach().requires_grad_()
    module.zero_grad(set_to_none=True)
    with split_conv.within(streams):
        y = route(module, x)
    y.float().square().sum().backward()
    return y, x.grad, module.weight.grad, None if module.bias is None else module.bias.grad


@pytest.mark.parametrize("autocast", ["off", "bf16-uncached", "bf16-cached"])
@pytest.mark.parametrize("layer", CONVS)
def test_the_function_is_the_plain_convolution(monkeypatch, layer, autocast):
    """Output (values, dtype, layout) and gradients of the routed call equal the plain
    module's, through the Function (a SplitBackwardConvolution node, split as SPLIT_NODE).
    Under autocast the Function casts what autocast would; without those casts the output
    would be float32 here and this test would fail."""
    torch.manual_seed(0)
    module = CONVS[layer]()
    channels = module.in_channels
    x = torch.randn(2, channels, 8, 8).contiguous(memory_format=torch.channels_last)
    route = conv_transpose2d if isinstance(module, nn.ConvTranspose2d) else conv2d
    region = (contextlib.nullcontext() if autocast == "off" else
              torch.autocast("cpu", dtype=torch.bfloat16,
                             cache_enabled=autocast == "bf16-cached"))
    with region:
        expected = _run(route, module, x)
        recorder = RecordingWgradStreams().watch(monkeypatch)
        got = _run(route, module, x, recorder)
    assert type(got[0].grad_fn).__name__ == "SplitBackwardConvolutionBackward"
    assert expected[0].dtype == (torch.float32 if autocast == "off" else torch.bfloat16)
    assert got[0].dtype == expected[0].dtype and got[0].stride() == expected[0].stride()
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    assert recorder.log == SPLIT_NODE
    grad_weight, grad_bias = recorder.joined[0]
    assert grad_weight.shape == module.weight.shape and grad_bias.shape == module.bias.shape


@pytest.mark.parametrize("padded", [conv2d_channel_padded, conv_transpose2d_channel_padded])
def test_the_channel_padded_paths_split_too(monkeypatch, padded):
    """The GPU's zero-padded image-side layers (called directly here: on a CPU the routing
    leaves them to the module) go through the Function as well, with the plain call's bits."""
    torch.manual_seed(0)
    module = (nn.Conv2d(6, 8, 4, 2, 1) if padded is conv2d_channel_padded
              else nn.ConvTranspose2d(8, 3, 4, 2, 1))
    x = torch.randn(2, module.in_channels, 8, 8)
    expected = _run(padded, module, x)
    recorder = RecordingWgradStreams().watch(monkeypatch)
    got = _run(padded, module, x, recorder)
    for ours, theirs in zip(got, expected, strict=True):
        assert torch.equal(ours, theirs)
    assert recorder.log == SPLIT_NODE


def test_the_plain_call_runs_where_nothing_overlaps(monkeypatch):
    """Outside ``within``, without gradients, with no input gradient (G's first layer) or no
    weight gradient (the frozen D of the generator step): no Function, no fork."""
    recorder = RecordingWgradStreams().watch(monkeypatch)
    module = nn.Conv2d(4, 8, 4, 2, 1)
    x = torch.randn(1, 4, 8, 8)
    assert conv2d(module, x.requires_grad_()).grad_fn.name() == "ConvolutionBackward0"
    with split_conv.within(recorder):
        with torch.no_grad():
            assert conv2d(module, x).grad_fn is None
        assert conv2d(module, x.detach()).grad_fn.name() == "ConvolutionBackward0"
        module.requires_grad_(False)
        assert conv2d(module, x).grad_fn.name() == "ConvolutionBackward0"
        module.requires_grad_(True)
        assert split_conv.module_applies(module, x)
        assert not split_conv.module_applies(nn.Conv2d(4, 8, 3, padding_mode="reflect"), x)
        assert not split_conv.module_applies(nn.Conv2d(4, 8, 3, groups=2), x)
    assert split_conv._active is None
    assert recorder.log == []


def test_within_restores_the_previous_setting_after_an_error():
    recorder = RecordingWgradStreams()
    with pytest.raises(RuntimeError), split_conv.within(recorder):
        raise RuntimeError
    assert split_conv._active is None
    with split_conv.within(recorder), split_conv.within(None):
        assert split_conv._active is None


def test_the_split_sees_each_layer_in_a_network_backward(monkeypatch):
    """A U-Net forward and backward inside ``within`` (instance norm: every convolution has a
    bias): every convolution but the first (whose input, the image, wants no gradient) is one
    split node."""
    netG, _ = tiny_networks(norm="instance")
    recorder = RecordingWgradStreams().watch(monkeypatch)
    with split_conv.within(recorder):
        out = netG(torch.rand(1, 3, 32, 32))
    out.sum().backward()
    assert recorder.log == SPLIT_NODE * 9
    assert all(len(tensors) == 2 for tensors in recorder.joined)


def test_the_routing_check_is_one_lookup_outside_the_step():
    """The cost of the hot path outside the engine: ``module_applies`` returns at its first
    test when no step is running (a guard on the order of the checks, not a timing)."""
    class Exploding(nn.Module):
        def __getattr__(self, name):
            raise AssertionError(f"read {name} outside the step")

    assert not split_conv.module_applies(Exploding(), None)


def test_every_mask_combination_is_handled(monkeypatch):
    """A bias-free convolution joins one tensor; all three masks as the plain node has them."""
    for bias in (True, False):
        module = nn.Conv2d(4, 8, 3, bias=bias)
        x = torch.randn(1, 4, 6, 6)
        expected = _run(conv2d, module, x)
        recorder = RecordingWgradStreams().watch(monkeypatch)
        got = _run(conv2d, module, x, recorder)
        for ours, theirs in itertools.zip_longest(got, expected):
            assert (ours is None and theirs is None) or torch.equal(ours, theirs)
        wgrad_mask = "-xx" if bias else "-x-"
        assert recorder.log == ["fork", f"backward {wgrad_mask} on side",
                                "backward x-- on main", f"join {1 + bias}"]
