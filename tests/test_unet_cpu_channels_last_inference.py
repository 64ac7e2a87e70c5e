"""CPU float32 inference of fastp2p.UNet computed channels-last whatever the input's and the
module's layout (issue 15 item 4): copies of the convolutions' weights packed for oneDNN (or
channels-last for a transposed convolution run in the GEMM form), cached per module and rebuilt
when a weight changes (fastp2p.nn.folding.conv_in_layout, and the folds built in that layout).
Against the float64 reference module (DESIGN section 5), in eval and train mode; the output in
the input's memory format; the cache following in-place changes; a forward that records
gradients left on the module's own weights and layout.

Uninitialised memory is poisoned (deterministic mode fills ``torch.empty`` with NaN).
"""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn import folding, fused
from fastp2p.ops import conv_transpose, onednn_packed
from fastp2p.ops.backends import backend_for
from fastp2p.ops.deconv_phases import PhasedConvTranspose2d
from helpers.network_checks import compare_networks, randomize_batchnorms, unet_pair
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import FAST_CPU_BACKEND_PARAMS

ON_FAST_BACKENDS = pytest.mark.parametrize("backend", FAST_CPU_BACKEND_PARAMS, indirect=True)
FORMATS = pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                                  ids=["nchw", "channels_last"])
CL = torch.channels_last


def _unet_pair(norm="batch"):
    """(fastp2p.UNet, the float64 reference UnetGenerator) with the same weights and BatchNorm
    statistics away from their defaults (a fold that ignored one would show); no dropout, so
    that train mode is deterministic and comparable."""
    ours, theirs = unet_pair(norm, num_downs=6, ngf=8)
    randomize_batchnorms(theirs, 5)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _image(seed=1):
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _reference_run(theirs, x, train):
    """The float64 reference's output on x (its running statistics updated in train mode)."""
    with torch.no_grad():
        return theirs.train(train)(x.double())


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _record_convs(monkeypatch):
    """[(module, input)] of every convolution the U-Net forward runs."""
    calls = []
    for name in ("conv2d", "conv_transpose2d", "conv_transpose2d_into", "conv_transpose2d_tanh"):
        original = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda module, x, *rest, original=original:
                            calls.append((module, x)) or original(module, x, *rest))
    return calls


@ON_FAST_BACKENDS
@FORMATS
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("module_format", [torch.contiguous_format, CL],
                         ids=["nchw_module", "channels_last_module"])
@pytest.mark.parametrize("deconv_form", conv_transpose.CPU_FORMS)
def test_inference_computes_channels_last_and_matches_the_reference(
        backend, memory_format, mode, module_format, deconv_form, poisoned, monkeypatch):
    """Every convolution reads a channels-last input with its weight packed for oneDNN (a
    transposed one in the GEMM form: channels-last where that form is available; in the phase
    form: its phases' stand-in, packed); the output
    (and in train mode the running statistics, updated from the batch statistics) are the
    float64 reference's within DESIGN section 5, the output in the reference's memory format."""
    monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, deconv_form)
    ours, theirs = _unet_pair()
    ours.to(memory_format=module_format)
    train = mode == "train"
    ours.train(train)
    theirs64 = copy.deepcopy(theirs)
    x = _image().contiguous(memory_format=memory_format)
    calls = _record_convs(monkeypatch)
    with torch.no_grad():
        out = ours(x)
    expected = _reference_run(theirs64, x, train)
    assert_close(out, expected, FP32_NETWORK, f"{mode} output")
    # the reference's: channels-last where the input or the module is
    assert out.is_contiguous(memory_format=CL if CL in (memory_format, module_format)
                             else memory_format)
    assert len(calls) == len(_convs(ours))
    gemm = deconv_form == "gemm" and backend_for(x.device).provides("conv_transpose2d_fwd")
    for module, conv_input in calls:
        if gemm and isinstance(module, nn.ConvTranspose2d):
            assert module.weight.is_contiguous(memory_format=CL), module
        elif deconv_form == "phases" and isinstance(module, nn.ConvTranspose2d):
            assert type(module) is PhasedConvTranspose2d and onednn_packed.is_packed(
                module.weight), module
        else:
            assert onednn_packed.is_packed(module.weight), module
        assert conv_input.is_contiguous(memory_format=CL), module
    ref_buffers = dict(theirs64.named_buffers())
    for name, buffer in ours.named_buffers():
        if name in ref_buffers:
            assert_close(buffer, ref_buffers[name], FP32_NETWORK, f"{mode} buffer {name}")


@ON_FAST_BACKENDS
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_in_place_changes_between_calls_reach_the_second_output(backend, mode, poisoned):
    """A conv weight changed in place (one with no norm after it, one folded in eval mode, a
    transposed one) and a running statistic: the next NCHW call follows each."""
    ours, theirs = _unet_pair()
    train = mode == "train"
    ours.train(train)
    x = _image()

    def assert_follows(what):
        theirs64 = copy.deepcopy(theirs)
        with torch.no_grad():
            out = ours(x)
        assert_close(out, _reference_run(theirs64, x, train), FP32_NETWORK, what)
        assert out.is_contiguous()

    assert_follows("first call")
    outer, level = ours.model.model, ours.model.model[1].model
    ref_outer, ref_level = theirs.model.model, theirs.model.model[1].model
    gen = torch.Generator().manual_seed(4)
    changes = [("outermost conv weight (no norm)", outer[0].weight, ref_outer[0].weight),
               ("conv weight before a BatchNorm", level[1].weight, ref_level[1].weight),
               ("transposed conv weight", level[5].weight, ref_level[5].weight),
               ("outermost transposed conv bias", outer[3].bias, ref_outer[3].bias)]
    for what, ours_tensor, ref_tensor in changes:
        with torch.no_grad():
            ours_tensor.add_(torch.randn(ours_tensor.shape, generator=gen) * 0.05)
            ref_tensor.copy_(ours_tensor)
        assert_follows(f"after changing the {what}")
    if not train:  # train mode normalises with batch statistics: running ones are not read
        with torch.no_grad():
            level[2].running_var.mul_(2), ref_level[2].running_var.mul_(2)
        assert_follows("after changing a running_var")


@ON_FAST_BACKENDS
def test_the_weight_copies_are_built_once_and_only_a_changed_one_again(backend, monkeypatch):
    ours, _ = _unet_pair(norm="instance")  # nothing folded: every conv takes a copy
    built = []
    original = folding.stand_in
    monkeypatch.setattr(folding, "stand_in",
                        lambda conv, *a: built.append(conv) or original(conv, *a))
    with torch.no_grad():
        ours.eval()(_image())
        ours(_image(2))
    assert sorted(map(id, built)) == sorted(map(id, _convs(ours)))  # once each, then reused
    with torch.no_grad():
        ours.model.model[0].weight.mul_(2)
        ours(_image())
    assert built[len(_convs(ours)):] == [ours.model.model[0]]


@ON_FAST_BACKENDS
@FORMATS
def test_a_forward_that_records_gradients_is_unaffected(backend, memory_format, monkeypatch):
    """The autograd path runs the module's own convolutions on the input's layout (an NCHW
    module on an NCHW input stays NCHW), no copy is made, and output and every gradient are the
    reference's."""
    ours, theirs = _unet_pair()
    with torch.no_grad():
        ours.eval()(_image())  # an inference call first: its copies must not reach autograd
    calls = _record_convs(monkeypatch)
    x = _image().contiguous(memory_format=memory_format)
    compare_networks(ours, copy.deepcopy(theirs), x, True, "with gradients")
    own = {id(m) for m in _convs(ours)}
    assert len(calls) == len(own) and all(id(module) in own for module, _ in calls)
    if memory_format == torch.contiguous_format:
        assert calls[0][1].is_contiguous()  # not converted to channels-last


def test_the_weights_are_laid_out_anew_only_for_eager_cpu_float32_inference(monkeypatch):
    x = torch.zeros(1, 3, 32, 32)
    assert fused.weight_layouts(x, True) is fused.cpu_inference_layout
    assert fused.weight_layouts(x, False) is fused.module_layout
    assert fused.weight_layouts(x.bfloat16(), True) is fused.module_layout
    assert fused.weight_layouts(x.to("meta"), True) is fused.module_layout
    with torch.autocast("cpu", torch.bfloat16):  # the packed ops would compute in float32
        assert fused.weight_layouts(x, True) is fused.channels_last_layout
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert fused.weight_layouts(x, True) is fused.module_layout
    monkeypatch.undo()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert fused.weight_layouts(x, True) is fused.module_layout


@ON_FAST_BACKENDS
def test_weights_created_under_inference_mode_are_used_as_they_are(backend):
    """Inference tensors have no version counter to watch: no copy is cached, the output is
    still the reference's and NCHW."""
    _, theirs = _unet_pair()
    with torch.inference_mode():
        ours = fastp2p.UNet(3, 3, 6, 8, norm="batch").eval()
        ours.load_state_dict(theirs.state_dict())
        out = ours(_image())
    assert not any(conv in folding._layout_cache for conv in _convs(ours))
    assert out.is_contiguous()
    assert_close(out, _reference_run(copy.deepcopy(theirs), _image(), False),
                 FP32_NETWORK, "inference tensors")
