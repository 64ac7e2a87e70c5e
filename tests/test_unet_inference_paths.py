"""fastp2p.UNet's cheap inference paths (issue 15 items 1 and 4): the norm layers listed once and
listed again when the module tree changes (``unet_supported``), and the layers with nothing left
of their norm run on CPUs as torch's in-place activation / cat + relu_, the same bits as the
fused ops there.
Uninitialised memory is poisoned (deterministic mode fills ``torch.empty`` with NaN)."""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn import fused, layer_walk
from fastp2p.ops import deconv_phases, norm_act, norm_act_concat
from fastp2p.ops.conv_transpose import conv_transpose2d
from fastp2p.ops.stand_ins import PHASES, stand_in
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import FAST_CPU_BACKEND_PARAMS


def _unet_pair(norm="batch"):
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.UnetGenerator(
        3, 3, 5, 4, reference.get_norm_layer(norm), use_dropout=True))
    ours = fastp2p.UNet(3, 3, 5, 4, norm=norm, use_dropout=True)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _input(seed=1):
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _batchnorms(net):
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def test_unet_supported_follows_a_replaced_layer_and_a_changed_setting(monkeypatch):
    ours, _ = _unet_pair()
    walks = []
    norm_like = layer_walk._norm_like
    monkeypatch.setattr(layer_walk, "_norm_like", lambda unet: walks.append(1) or norm_like(unet))
    assert fused.unet_supported(ours) and fused.unet_supported(ours)
    assert len(walks) == 1  # listed once, not per call

    # momentum=None in train mode: not reproduced by the fused path.
    level = ours.model.model[1].model
    cumulative = nn.BatchNorm2d(level[2].num_features, momentum=None)
    level[2] = cumulative  # a replaced layer: listed again
    assert not fused.unet_supported(ours)
    assert len(walks) == 2
    ours.eval()  # a train/eval switch needs no new list: each layer is asked every call
    assert fused.unet_supported(ours)
    ours.train()
    assert not fused.unet_supported(ours)
    cumulative.momentum = 0.1  # nor does a changed setting
    assert fused.unet_supported(ours)
    assert len(walks) == 2


def test_a_replaced_layer_changes_what_the_forward_runs(poisoned):
    """The forward falls back to the reference forward once a layer it cannot fuse is put in
    (after the cached list said "supported"), and its output still matches the reference."""
    ours, theirs = _unet_pair()
    x = _input()
    ours(x)
    for net in (ours, theirs):
        net.model.model[1].model[2] = nn.BatchNorm2d(8, momentum=None)
    calls = []
    original = fused.unet_forward
    fused_forward = lambda *a: calls.append(1) or original(*a)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastp2p.nn.unet, "unet_forward", fused_forward)
        assert_close(ours(x), theirs.double()(x.double()), FP32_NETWORK, "after replacing")
    assert calls == []


@pytest.mark.parametrize("backend", FAST_CPU_BACKEND_PARAMS, indirect=True)  # what CPUs run
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
def test_torch_in_place_paths_equal_the_fused_ops_bit_for_bit(backend, dtype, memory_format,
                                                              poisoned):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 5, 4, generator=gen).to(dtype).contiguous(memory_format=memory_format)
    skip = torch.randn(2, 3, 10, 8, generator=gen).to(dtype).contiguous(
        memory_format=memory_format)
    conv = nn.ConvTranspose2d(6, 5, 4, 2, 1).to(dtype)
    convs = [conv]
    if dtype == torch.float32 and deconv_phases.applies(conv, x):
        convs.append(stand_in(conv, conv.weight, conv.bias, PHASES, x.shape))
    with torch.no_grad():
        for activation, slope in (("leaky_relu", 0.2), ("relu", 0.0)):
            expected = norm_act(x, norm="none", activation=activation, slope=slope)
            got = fused._activation(x.clone(), fused._NO_NORM, True, activation, slope)
            assert torch.equal(got, expected)
        for module in convs:  # the decoder's relu(cat), the convolution written into it
            expected = norm_act_concat(skip, conv_transpose2d(module, x), norm="none",
                                       activation="relu")
            got = fused._relu_concat_written(skip, module, x)
            assert torch.equal(got, expected), type(module).__name__
            assert got.is_contiguous(memory_format=memory_format)  # the inputs' layout


def test_the_in_place_paths_apply_only_to_inference_without_a_norm():
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        kept = x.clone()
        fused._activation(kept, dict(norm="instance"), True, "relu")
        assert torch.equal(kept, x)  # the fused op, out of place
        fused._activation(kept, fused._NO_NORM, False, "relu")
        assert torch.equal(kept, x)


def test_eval_forward_runs_no_fused_call_once_batchnorm_is_folded(monkeypatch, poisoned):
    """Everything left of each layer is an elementwise op: torch's own where no backend is forced
    (a user's CPU: fastp2p.ops.activations_in_torch), and the output matches the float64
    reference."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    ours, theirs = _unet_pair()
    ours.eval(), theirs.eval()

    def forbidden(*args, **kwargs):
        raise AssertionError("a fused norm-act call in a folded eval forward")

    monkeypatch.setattr(fused, "norm_act", forbidden)
    monkeypatch.setattr(fused, "norm_act_concat", forbidden)
    x = _input(2)
    with torch.no_grad():
        got = ours(x)
    expected = copy.deepcopy(theirs).double()(x.double())
    assert_close(got, expected, FP32_NETWORK, "folded eval forward")


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_output_is_in_the_input_memory_format(memory_format, mode, poisoned):
    """As the reference module's: the CPU decoder's GEMM form writes channels-last, and an
    NCHW input gets an NCHW output back (issue 15 item 4)."""
    ours, theirs = _unet_pair()
    ours.train(mode == "train"), theirs.train(mode == "train")
    x = _input(3).contiguous(memory_format=memory_format)
    with torch.no_grad():
        got = ours(x)
        expected = copy.deepcopy(theirs).double()(x.double())
    assert got.is_contiguous(memory_format=memory_format)
    # (a 5-level U-Net has no Dropout: train mode's output is the reference's too)
    assert_close(got, expected, FP32_NETWORK, f"{mode} output")
