"""fastp2p.UNet with its convolutions fused (fastp2p.nn.unet_conv), through the Triton
interpreter, vs the reference UnetGenerator in float64 (DESIGN §5, 1e-4): output, input
gradient, every parameter gradient and the BatchNorm buffers, with every buffer that Python
allocates poisoned with NaN. FASTP2P_CONV=fused fuses every conv (5 down, 5 transposed); a
choice table fuses only the layers it lists, the others running today's path next to them;
dropout draws the same counter-based masks as today's path. Tiny networks (ngf 4, 32x32; 64x64
and 128x128 where dropout needs num_downs 6 or 7): the interpreter is slow.
"""
import copy

import pytest
import torch

from fastp2p.ops.backends import conv_choice
from helpers.conv_tables import write_conv_table
from helpers.network_checks import (compare_networks, random_images, unet_pair, count_fused_convs,
                                    poison_allocations, with_same_masks)
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]

CONVS = 10  # num_downs 5: five down convs and five transposed ones


def _layer(norm, input, weight, transposed):
    return dict(norm=norm, dtype="float32", input=input, weight=weight, stride=2, padding=1,
                transposed=transposed)


def _use_table(monkeypatch, tmp_path, *layers):
    """A choice table listing ``layers`` in place of the (absent) committed one."""
    table = write_conv_table(tmp_path / "conv_choice.json", layers)
    monkeypatch.setattr(conv_choice, "TABLE", table)
    monkeypatch.delenv("FASTP2P_CONV", raising=False)


@pytest.fixture
def fused_calls(monkeypatch):
    """Today's ops on the reference backend (the fused conv is Triton's regardless), NaN
    allocations, and the count of fused launches."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = count_fused_convs(monkeypatch, KERNELS)
    poison_allocations(monkeypatch)
    return calls


@pytest.mark.parametrize("norm, batch", [("batch", 2), ("instance", 1), ("none", 1)])
def test_every_conv_fused_matches_reference(monkeypatch, fused_calls, norm, batch):
    """Batch 1 where the statistics are per image or constants (eval): the interpreter is
    slow."""
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    ours, theirs64 = unet_pair(norm)
    compare_networks(ours, theirs64, random_images(32, batch), True, f"unet-{norm} train")
    assert fused_calls[0] == CONVS
    if norm == "batch":  # eval: the running statistics (updated above) in the prologues
        ours.zero_grad()
        theirs64.zero_grad()
        compare_networks(ours, theirs64, random_images(32, 1), False, "unet-batch eval")
        assert fused_calls[0] == 2 * CONVS


# Mixed chains (num_downs 5, 32x32, batch 2). Batch norm: a fused down conv read by a module
# down conv and (as the skip) by a module decoder; a fused decoder reading a module down output
# and a module decoder's pending norm, read in turn by a module decoder; the fused output conv.
# Instance norm (per-image scale/shift pending): a fused down conv read by a module down conv
# and, as the skip, by a fused decoder that also reads a module decoder's pending norm and is
# read by a module decoder.
MIXED = {
    "batch": (_layer("batch", [2, 4, 16, 16], [8, 4, 4, 4], False),  # second down conv
              _layer("batch", [2, 64, 2, 2], [64, 16, 4, 4], True),  # third decoder conv
              _layer("none", [2, 8, 16, 16], [8, 3, 4, 4], True)),   # output conv
    "instance": (_layer("instance", [2, 4, 16, 16], [8, 4, 4, 4], False),  # second down conv
                 _layer("instance", [2, 32, 4, 4], [32, 8, 4, 4], True)),  # fourth decoder
}


@pytest.mark.parametrize("norm", sorted(MIXED))
def test_a_table_fuses_only_the_layers_it_lists(monkeypatch, tmp_path, fused_calls, norm):
    """The mixed chains above, in training; then eval without a gradient, where the module
    layers fold their BatchNorm."""
    _use_table(monkeypatch, tmp_path, *MIXED[norm])
    ours, theirs64 = unet_pair(norm)
    compare_networks(ours, theirs64, random_images(32), True, f"unet-{norm}-table train")
    assert fused_calls[0] == len(MIXED[norm])
    with torch.no_grad():
        out, expected = ours.eval()(random_images(32)), theirs64.eval()(random_images(32).double())
    assert_close(out, expected, FP32_NETWORK, f"unet-{norm}-table eval")
    assert fused_calls[0] == 2 * len(MIXED[norm])


# num_downs 7 (128x128, cheap with the large layers left to their modules): two dropout blocks,
# inner (up: 2 x 32 x 4 x 4, dropped first) and outer (2 x 32 x 8 x 8), then the decoder conv
# that reads the outer one's dropped tensor.
INNER_DROPOUT = _layer("batch", [2, 64, 2, 2], [64, 32, 4, 4], True)
OUTER_DROPOUT = _layer("batch", [2, 64, 4, 4], [64, 32, 4, 4], True)
ABOVE_DROPOUT = _layer("batch", [2, 64, 8, 8], [64, 16, 4, 4], True)
DROPPED_128 = 2 * 32 * 4 * 4 + 2 * 32 * 8 * 8


@pytest.mark.parametrize("layers", [(INNER_DROPOUT,), (ABOVE_DROPOUT,),
                                    (INNER_DROPOUT, OUTER_DROPOUT, ABOVE_DROPOUT)],
                         ids=["fused-producer", "fused-consumer", "chain"])
def test_dropout_masks_through_fused_layers(monkeypatch, tmp_path, fused_calls, layers):
    """The mask after a fused producer (norm_act_concat), before a fused consumer (norm_act,
    then the prologue), and in the fused prologue itself (forward and backward), drawn in
    today's order (inner block first): all the reference's with fastp2p's masks."""
    _use_table(monkeypatch, tmp_path, *layers)
    ours, theirs64 = unet_pair("batch", num_downs=7, use_dropout=True)
    ours.set_dropout_rng(77, 1000)
    with_same_masks(theirs64, 77, 1000)
    compare_networks(ours, theirs64, random_images(128), True, "unet-dropout")
    assert fused_calls[0] == len(layers)
    assert ours.dropout_rng.tolist() == [77, 1000 + DROPPED_128]


def test_fused_and_todays_path_drop_the_same_elements(monkeypatch, fused_calls):
    """Same RNG state, same masks: FASTP2P_CONV=fused vs today's path (and the reference with
    those masks), forward in train mode (batch 1: the interpreter is slow); both advance the
    stream alike."""
    ours, theirs64 = unet_pair("batch", num_downs=6, use_dropout=True)
    today = copy.deepcopy(ours)
    for net in (ours, today):
        net.set_dropout_rng(5, 123)
    with_same_masks(theirs64, 5, 123)
    x = random_images(64, batch=1)
    with torch.no_grad():
        monkeypatch.setenv("FASTP2P_CONV", "module")
        expected_today = today.train()(x)
        monkeypatch.setenv("FASTP2P_CONV", "fused")
        out = ours.train()(x)
        expected = theirs64.train()(x.double())
    assert fused_calls[0] == 12
    assert_close(out, expected_today, FP32_NETWORK, "fused vs today")
    assert_close(out, expected, FP32_NETWORK, "fused vs reference")
    assert ours.dropout_rng.tolist() == today.dropout_rng.tolist() == [5, 123 + 32 * 4 * 4]


@pytest.mark.parametrize("override", [None, "module"])
def test_without_the_override_or_a_table_no_conv_is_fused(monkeypatch, fused_calls, override):
    if override is None:
        monkeypatch.delenv("FASTP2P_CONV", raising=False)
    else:
        monkeypatch.setenv("FASTP2P_CONV", override)
    assert conv_choice.fused_layers(conv_choice.TABLE) == frozenset()  # none is committed
    ours, theirs64 = unet_pair("batch")
    compare_networks(ours, theirs64, random_images(32), True, "unet-default")
    assert fused_calls[0] == 0


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
def test_the_output_is_in_the_input_memory_format(monkeypatch, fused_calls, memory_format):
    """As the reference module's, though the fused convolution writes channels-last."""
    ours, _ = unet_pair("none")
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    with torch.no_grad():
        got = ours.eval()(random_images(32, batch=1).contiguous(memory_format=memory_format))
    assert fused_calls[0] == CONVS
    assert got.is_contiguous(memory_format=memory_format)


def test_unfusable_input_says_what_to_do(monkeypatch):
    ours, _ = unet_pair("instance")
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    with pytest.raises(ValueError, match="cannot run this layer"):
        ours.double()(random_images(32).double())


def test_table_keys_tell_transposed_convs_apart(monkeypatch, tmp_path):
    """A decoder conv's key: its sources' concatenation as input, and "transposed" (optional
    in a table, default false), so a direct conv of the same shapes is not fused by it."""
    _use_table(monkeypatch, tmp_path, _layer("batch", [2, 64, 2, 2], [64, 32, 4, 4], True))
    weight = torch.rand(64, 32, 4, 4)
    geometry = dict(stride=2, padding=1, norm="batch", gradient=False)
    assert conv_choice.fused_conv_dtype(torch.rand(2, 32, 2, 2), weight, transposed=True,
                                        **geometry) is not None
    assert conv_choice.fused_conv_dtype(torch.rand(2, 64, 2, 2), weight, **geometry) is None
    entry = _layer("batch", [2, 64, 2, 2], [64, 32, 4, 4], True)
    del entry["transposed"]
    (tmp_path / "older").mkdir()  # a new path: tables are cached by path
    _use_table(monkeypatch, tmp_path / "older", entry)
    assert conv_choice.fused_conv_dtype(torch.rand(2, 64, 2, 2), weight, **geometry) is not None
    assert conv_choice.fused_conv_dtype(torch.rand(2, 32, 2, 2), weight, transposed=True,
                                        **geometry) is None
