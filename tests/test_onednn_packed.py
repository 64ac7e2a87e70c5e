"""oneDNN convolutions with weights packed once (fastp2p.ops.onednn_packed) and the measured
choice of a transposed convolution's CPU inference form (fastp2p.ops.conv_transpose
.cpu_inference_form), issue 15 item 4: the packed convolutions against float64 torch on random
data, one packing for every input size, the choice picking the faster form once per layer shape,
input shape and thread count, and the U-Net falling back to channels-last copies where the
packed ops are missing."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastp2p.nn import folding, fused
from fastp2p.ops import conv_transpose, deconv_phases, onednn_packed
from fastp2p.ops.remembered_forms import RememberedForms
from helpers.cpp_backend_helpers import requires_extension
from helpers.network_checks import unet_pair
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, assert_close

pytestmark = pytest.mark.skipif(not onednn_packed.available(),
                                reason="this torch build has no oneDNN packed convolution ops")
CL = torch.channels_last
FORMS = len(conv_transpose.CPU_FORMS)  # all of them apply to the layers timed below

# (module, input shape): the networks' layers (4x4 stride 2 padding 1), a stride-1 tail, odd sizes,
# a grouped convolution (a user's layer in a network that packs the rest).
LAYERS = [
    (nn.Conv2d(3, 8, 4, 2, 1), (2, 3, 16, 16)),
    (nn.Conv2d(8, 16, 4, 2, 1, groups=2), (1, 8, 8, 8)),
    (nn.Conv2d(6, 5, 4, 1, 1, bias=False), (1, 6, 7, 9)),
    (nn.ConvTranspose2d(16, 3, 4, 2, 1), (2, 16, 8, 8)),
    (nn.ConvTranspose2d(8, 8, 4, 2, 1), (1, 8, 1, 1)),
    (nn.ConvTranspose2d(6, 5, 4, 2, 1, bias=False), (1, 6, 3, 5)),
]


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 1.3 + 0.2


def _float64(module, x):
    functional = F.conv_transpose2d if isinstance(module, nn.ConvTranspose2d) else F.conv2d
    bias = None if module.bias is None else module.bias.double()
    return functional(x.double(), module.weight.double(), bias, module.stride, module.padding,
                      groups=module.groups)


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("module, shape", LAYERS, ids=lambda v: str(v).replace(" ", ""))
def test_a_packed_convolution_matches_float64(module, shape, layout):
    torch.manual_seed(0)
    module.reset_parameters()
    packed = onednn_packed.pack(module, module.weight.to(memory_format=layout), shape)
    assert onednn_packed.is_packed(packed) and not onednn_packed.is_packed(module.weight)
    x = _random(shape, 1).contiguous(memory_format=layout)
    with torch.no_grad():
        out = onednn_packed.run(module, x, packed, module.bias)
    assert_close(out, _float64(module, x), FP32_SINGLE_OP, str(module))
    if layout == CL:
        assert out.is_contiguous(memory_format=CL)


@pytest.mark.parametrize("module", [nn.Conv2d(4, 6, 4, 2, 1), nn.ConvTranspose2d(4, 6, 4, 2, 1)],
                         ids=["conv", "transposed"])
def test_a_packing_for_one_input_size_computes_right_on_others(module):
    """Packed for one size, a weight still gives the right numbers on inputs of other sizes
    (oneDNN reorders it for them: slower, fastp2p.ops.onednn_packed)."""
    packed = onednn_packed.pack(module, module.weight, (1, 4, 8, 8))
    for seed, shape in enumerate([(1, 4, 8, 8), (3, 4, 4, 6), (2, 4, 2, 2)]):
        x = _random(shape, seed).contiguous(memory_format=CL)
        with torch.no_grad():
            out = onednn_packed.run(module, x, packed, module.bias)
        assert_close(out, _float64(module, x), FP32_SINGLE_OP, f"input {shape}")


def test_applies_only_to_float32_cpu_zero_padded_convolutions():
    x = torch.zeros(1, 4, 8, 8)
    assert onednn_packed.applies(nn.Conv2d(4, 4, 3, padding=1), x)
    assert onednn_packed.applies(nn.ConvTranspose2d(4, 4, 4, 2, 1), x)
    assert not onednn_packed.applies(nn.Conv2d(4, 4, 3, padding=1), x.bfloat16())
    assert not onednn_packed.applies(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), x)
    assert not onednn_packed.applies(nn.Conv2d(4, 4, 3, padding="same"), x)


@pytest.fixture
def timings(monkeypatch, tmp_path):
    """Fake timings for the form choice: {form: seconds}, and the list of forms timed; the
    measured choices are forgotten before and after, and remembered in an empty cache folder."""
    seconds, timed = {"gemm": 1e-3, "onednn": 2e-3, "phases": 3e-3}, []

    def fake(form, run):
        run()
        timed.append(form)
        return seconds[form]

    monkeypatch.setattr(conv_transpose, "_timed", fake)
    monkeypatch.setattr(conv_transpose, "_measured_forms", {})
    monkeypatch.setattr(conv_transpose, "_remembered_forms", RememberedForms())
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    monkeypatch.delenv(conv_transpose.FORM_ENV_VAR, raising=False)
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    return seconds, timed


@requires_extension
def test_the_faster_form_is_measured_once_per_layer_input_shape_and_thread_count(
        timings, one_thread):
    seconds, timed = timings
    module, x = nn.ConvTranspose2d(8, 4, 4, 2, 1), torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        assert conv_transpose.cpu_inference_form(module, x) == "gemm"
        assert len(timed) == FORMS * conv_transpose._TIMED_ROUNDS
        seconds.update(gemm=4e-3)  # remembered: not measured again for the same key
        assert conv_transpose.cpu_inference_form(nn.ConvTranspose2d(8, 4, 4, 2, 1), x) == "gemm"
        assert len(timed) == FORMS * conv_transpose._TIMED_ROUNDS
        # Another input shape, and another thread count, are measured anew.
        assert conv_transpose.cpu_inference_form(module, torch.randn(2, 8, 4, 4)) == "onednn"
        torch.set_num_threads(2)
        seconds.update(gemm=1e-3)
        assert conv_transpose.cpu_inference_form(module, x) == "gemm"
    assert len(timed) == 3 * FORMS * conv_transpose._TIMED_ROUNDS


@requires_extension
def test_inputs_of_one_size_class_share_a_measurement_and_the_record_is_capped(timings,
                                                                             monkeypatch):
    """Batch size and pixel count count by their power of two: images of many sizes are not
    timed one by one; past the cap the record starts afresh."""
    _, timed = timings
    module = nn.ConvTranspose2d(8, 4, 4, 2, 1)
    with torch.no_grad():
        for shape in [(1, 8, 4, 4), (1, 8, 5, 6), (1, 8, 7, 4)]:  # 16 to 30 pixels
            conv_transpose.cpu_inference_form(module, torch.randn(shape))
        assert len(timed) == FORMS * conv_transpose._TIMED_ROUNDS
        for shape in [(1, 8, 8, 4), (3, 8, 4, 4)]:  # 32 pixels; a batch of 3
            conv_transpose.cpu_inference_form(module, torch.randn(shape))
        assert len(timed) == 3 * FORMS * conv_transpose._TIMED_ROUNDS
        monkeypatch.setattr(conv_transpose, "_MAX_MEASURED", 3)
        conv_transpose.cpu_inference_form(module, torch.randn(1, 8, 16, 16))
    assert len(conv_transpose._measured_forms) == 1


@requires_extension
def test_forms_that_run_long_are_timed_in_one_round(timings):
    seconds, timed = timings
    seconds.update(gemm=0.5, onednn=0.3, phases=0.4)
    with torch.no_grad():
        form = conv_transpose.cpu_inference_form(nn.ConvTranspose2d(8, 4, 4, 2, 1),
                                                 torch.randn(1, 8, 4, 4))
    assert form == "onednn" and timed == ["gemm", "onednn", "phases"]


@requires_extension
def test_the_phase_form_is_taken_where_fastest_and_never_when_switched_off(timings):
    seconds, timed = timings
    seconds.update(phases=0.5e-3)
    module, x = nn.ConvTranspose2d(8, 4, 4, 2, 1), torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        assert conv_transpose.cpu_inference_form(module, x) == "phases"
        timed.clear()
        with deconv_phases.phases_disabled():  # measured anew, without it
            assert conv_transpose.cpu_inference_form(module, x) == "gemm"
    assert "phases" not in timed and len(timed) == 2 * conv_transpose._TIMED_ROUNDS


@requires_extension
def test_the_environment_fixes_the_form(timings, monkeypatch):
    _, timed = timings
    module, x = nn.ConvTranspose2d(8, 4, 4, 2, 1), torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        for form in conv_transpose.CPU_FORMS:
            monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, form)
            assert conv_transpose.cpu_inference_form(module, x) == form
        monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, "fastest")
        with pytest.raises(ValueError, match="FASTP2P_CPU_DECONV='fastest': expected one of "
                                             "gemm, onednn, phases"):
            conv_transpose.cpu_inference_form(module, x)
    assert timed == []


def test_a_form_that_alone_applies_is_taken_without_measuring(timings, monkeypatch):
    _, timed = timings
    module, x = nn.ConvTranspose2d(8, 4, 4, 2, 1), torch.randn(1, 8, 4, 4)
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")  # no GEMM form there
    with torch.no_grad(), deconv_phases.phases_disabled():
        assert conv_transpose.cpu_inference_form(module, x) == "onednn"
        assert conv_transpose.cpu_inference_form(module, x.bfloat16()) == "module"
    assert timed == []


def test_the_unet_uses_channels_last_copies_where_packing_is_off():
    ours, theirs = unet_pair("batch", num_downs=5, ngf=4)
    ours.eval(), theirs.eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad(), onednn_packed.packing_disabled():
        assert not onednn_packed.available()
        out = ours(x)
    assert onednn_packed.available()
    assert_close(out, copy.deepcopy(theirs)(x.double()), FP32_NETWORK, "without packed ops")
    stand_ins = [entry.conv for m in ours.modules()
                 for cache in (folding._cache, folding._layout_cache) if m in cache
                 for entry in cache[m].values()]
    assert stand_ins and all(m.weight.is_contiguous(memory_format=CL) for m in stand_ins)


def test_alternating_layouts_keep_one_copy_each_instead_of_rebuilding(monkeypatch):
    """A transposed convolution whose measured form differs between two input shapes keeps a
    stand-in per layout: alternating the shapes packs nothing after the first call of each."""
    monkeypatch.setattr(fused, "cpu_inference_form",
                        lambda conv, x: "gemm" if x.shape[0] == 1 else "onednn")
    packs = []
    pack = onednn_packed.pack
    monkeypatch.setattr(onednn_packed, "pack",
                        lambda conv, w, size: packs.append(conv) or pack(conv, w, size))
    ours, theirs = unet_pair("instance", num_downs=5, ngf=4)
    ours.eval(), theirs.eval()
    counts = []
    for batch in (1, 2, 1, 2, 1):
        x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch)) * 2 - 1
        with torch.no_grad():
            out = ours(x)
        assert_close(out, copy.deepcopy(theirs)(x.double()), FP32_NETWORK, f"batch {batch}")
        counts.append(len(packs))
    assert counts[1] > counts[0] and counts[1:] == [counts[1]] * 4


def test_forget_cached_weights_after_a_write_through_data():
    """A write through ``.data`` bumps no version counter, so the cached copies cannot see it
    (documented); ``forget_cached_weights`` drops them and the next call follows the write."""
    ours, theirs = unet_pair("batch", num_downs=5, ngf=4)
    ours.eval().to(memory_format=CL), theirs.eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        before = ours(x)
        for net in (ours, theirs):
            net.model.model[0].weight.data.mul_(1.5)
        assert torch.equal(ours(x), before)  # the copies did not see it
        folding.forget_cached_weights(ours)
        after = ours(x)
    assert_close(after, copy.deepcopy(theirs)(x.double()), FP32_NETWORK, "after forgetting")
