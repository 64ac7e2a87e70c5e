"""A transposed convolution's own settings reach every path that copies or keys them:

- the cached stand-ins of CPU float32 inference (a BatchNorm fold, a weight in another layout:
  fastp2p.nn.folding) are rebuilt when ``output_padding`` changes after the first call, so the
  output has the module's new shape and values (a fold sits after a U-Net's inner transposed
  convolutions, where the whole-network test cannot change it: the skip sizes would break);
- split_conv_backward.module_convolution of a ConvTranspose2d with output_padding 1 is the
  module's own call: output and every gradient;
- conv_choice's layer key tells a transposed convolution from a convolution of the same shapes,
  so a table entry for one never fuses the other;
- a U-Net inner layer changed so that its output no longer matches its skip is refused in CPU
  inference as the reference refuses it (the concatenation's writer resized a view and the
  network returned a buffer half unwritten).
"""

import warnings

import pytest
import torch
import torch.nn as nn

from fastp2p.nn.folding import conv_in_layout, folded_conv
from fastp2p.ops import split_conv_backward as split_conv
from fastp2p.ops.backends import conv_choice
from helpers.conv_tables import write_conv_table
from helpers.network_checks import random_images, unet_pair
from helpers.stream_recorders import RecordingWgradStreams
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import REGISTRY_DEFAULT


def _deconv_and_batchnorm():
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1)
    norm = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return conv, norm


def _expected(conv, norm, x):
    """norm(conv(x)) in float64, with the modules' current settings."""
    conv64 = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                conv.stride, conv.padding, conv.output_padding).double()
    conv64.load_state_dict(conv.state_dict())
    norm64 = nn.BatchNorm2d(norm.num_features).double().eval()
    norm64.load_state_dict(norm.state_dict())
    with torch.no_grad():
        return norm64(conv64(x.double()))


def test_a_fold_follows_output_padding_changed_after_the_first_call():
    conv, norm = _deconv_and_batchnorm()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        first = folded_conv(conv, norm)(x)
        assert first.shape == (2, 6, 9, 9)
        assert_close(first, _expected(conv, norm, x), FP32_SINGLE_OP, "before the change")
        conv.output_padding = (1, 1)
        after = folded_conv(conv, norm)(x)
    assert after.shape == (2, 6, 10, 10)
    assert_close(after, _expected(conv, norm, x), FP32_SINGLE_OP, "after output_padding 1")


def test_a_weight_in_another_layout_follows_output_padding_changed_after_the_first_call():
    conv, _ = _deconv_and_batchnorm()
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        assert conv_in_layout(conv, torch.channels_last)(x).shape == (2, 6, 9, 9)
        conv.output_padding = (1, 1)
        got = conv_in_layout(conv, torch.channels_last)(x)
        expected = conv(x)
    assert got.shape == expected.shape == (2, 6, 10, 10)
    assert_close(got, expected, FP32_SINGLE_OP, "after output_padding 1")


def test_split_module_convolution_keeps_output_padding(monkeypatch):
    torch.manual_seed(1)
    module = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(2, 4, 5, 5)
    grad_out = torch.randn(2, 3, 10, 10)

    def run(route):
        inp = x.clone().requires_grad_()
        module.zero_grad(set_to_none=True)
        out = route(inp)
        out.backward(grad_out)
        return out, inp.grad, module.weight.grad, module.bias.grad

    expected = run(module)
    recorder = RecordingWgradStreams().watch(monkeypatch)
    with split_conv.within(recorder):
        assert split_conv.module_applies(module, x.clone().requires_grad_())
        got = run(lambda inp: split_conv.module_convolution(module, inp))
    assert type(got[0].grad_fn).__name__ == "SplitBackwardConvolutionBackward"
    for name, ours, theirs in zip(("output", "grad x", "grad weight", "grad bias"), got,
                                  expected, strict=True):
        assert ours.shape == theirs.shape, name
        assert_close(ours, theirs, FP32_SINGLE_OP, name)


def _layer_keys(path) -> set:
    """The layer keys a table lists (conv_choice.routed_key's last field)."""
    return {layer for _, _, layer in conv_choice.fused_layers(path)}


def test_conv_choice_key_tells_a_transposed_conv_from_a_conv(tmp_path):
    shapes = dict(norm="batch", dtype="float32", input=[1, 8, 4, 4], weight=[8, 8, 4, 4],
                  stride=2, padding=1)
    args = ("batch", torch.float32, (1, 8, 4, 4), (8, 8, 4, 4), 2, 1)
    for listed_transposed in (True, False):
        path = tmp_path / f"table-{listed_transposed}.json"
        write_conv_table(path, [dict(shapes, transposed=listed_transposed)])
        keys = _layer_keys(path)
        assert conv_choice.layer_key(*args, listed_transposed) in keys
        assert conv_choice.layer_key(*args, not listed_transposed) not in keys
    assert conv_choice.layer_key(*args, True) != conv_choice.layer_key(*args, False)


@pytest.mark.parametrize("transposed", [True, False])
def test_a_table_entry_without_transposed_is_a_conv(tmp_path, transposed):
    path = write_conv_table(tmp_path / "table.json", [dict(
        norm="batch", dtype="float32", input=[1, 8, 4, 4], weight=[8, 8, 4, 4], stride=2,
        padding=1)])
    key = conv_choice.layer_key("batch", torch.float32, (1, 8, 4, 4), (8, 8, 4, 4), 2, 1,
                                transposed)
    assert (key in _layer_keys(path)) == (not transposed)


@pytest.mark.parametrize("backend", [REGISTRY_DEFAULT], indirect=True)  # the U-Net's own check
@pytest.mark.parametrize("layer, setting, value", [
    ("innermost-down", "padding", (2, 2)), ("inner-up", "padding", (2, 2)),
    ("inner-up", "stride", (1, 1)), ("inner-up", "output_padding", (1, 1))])
def test_a_unet_layer_that_no_longer_fits_its_skip_is_refused_in_inference(backend, layer,
                                                                           setting, value):
    ours, theirs = unet_pair("batch")
    for net in (ours, theirs):
        net.eval()
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        setattr(convs[4] if layer == "innermost-down" else convs[6], setting, value)
    x = random_images(32)
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
            theirs(x.double())
        with pytest.raises(ValueError, match="U-Net skip concatenation: the skip is"):
            ours(x)


@pytest.mark.parametrize("backend", [REGISTRY_DEFAULT], indirect=True)  # the C++ GEMM form too
@pytest.mark.parametrize("padding, size", [((2, 2), 30), ((0, 0), 34)])
def test_the_outermost_layer_with_other_padding_gives_the_references_output_and_no_warning(
        backend, padding, size):
    """QA: an outermost padding of 2 (64x64 in, 62x62 out) gave the right values with torch's
    deprecation warning of a resized out= tensor: the forms were timed into a 2H x 2W buffer,
    which a later torch refuses. The U-Net's output layer has no skip to break."""
    ours, theirs = unet_pair("batch")
    for net in (ours, theirs):
        net.eval()
        [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)][-1].padding = padding
    x = random_images(32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ours(x)
    expected = theirs(x.double())
    assert got.shape == expected.shape == (2, 3, size, size)
    assert_close(got, expected, FP32_NETWORK, "outermost padding changed")
