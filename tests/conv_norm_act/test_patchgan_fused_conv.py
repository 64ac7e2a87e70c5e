"""fastp2p.PatchDiscriminator with its convolutions fused (fastp2p.nn.fused_conv), through the
Triton interpreter, vs the reference NLayerDiscriminator in float64 (DESIGN §5, 1e-4): output,
input gradient, every parameter gradient and the BatchNorm buffers, with every buffer that
Python allocates poisoned with NaN. FASTP2P_CONV=fused fuses every layer; a committed choice
table fuses only the layers it lists; without either the network never calls the fused conv.
"""
import copy
import json

import pytest
import torch

import fastp2p
from fastp2p import reference
from fastp2p.ops.backends import conv_choice
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]


def _poison_allocations(monkeypatch):
    """torch.empty and Tensor.new_empty hand out NaN: an element a kernel leaves unwritten
    reaches the results."""
    empty, new_empty = torch.empty, torch.Tensor.new_empty

    def poisoned(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poisoned(empty(*a, **k)))
    monkeypatch.setattr(torch.Tensor, "new_empty",
                        lambda self, *a, **k: poisoned(new_empty(self, *a, **k)))


def _count_fused_convs(monkeypatch):
    """The number of fused forward launches so far, as calls[0]."""
    calls, launcher = [0], KERNELS.conv_fused_fwd

    def counted(*args, **kwargs):
        calls[0] += 1
        return launcher(*args, **kwargs)

    monkeypatch.setattr(KERNELS, "conv_fused_fwd", counted)
    return calls


def _pair(norm, n_layers):
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.NLayerDiscriminator(
        6, 4, n_layers, reference.get_norm_layer(norm)))
    ours = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=n_layers, norm=norm)
    ours.load_state_dict(theirs.state_dict())
    return ours, copy.deepcopy(theirs).double()


def _compare(ours, theirs64, train, what):
    ours.train(train)
    theirs64.train(train)
    x = torch.rand(2, 6, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    x_ours, x_ref = x.clone().requires_grad_(), x.double().requires_grad_()
    out, expected = ours(x_ours), theirs64(x_ref)
    weight = torch.rand(expected.shape, generator=torch.Generator().manual_seed(9),
                        dtype=torch.float64) * 2 - 1
    (out.double() * weight).sum().backward()
    (expected * weight).sum().backward()
    assert_close(out, expected, FP32_NETWORK, f"{what} output")
    assert_close(x_ours.grad, x_ref.grad, FP32_NETWORK, f"{what} grad input")
    ref_params = dict(theirs64.named_parameters())
    largest = max(p.grad.abs().max().item() for p in ref_params.values())
    for name, p in ours.named_parameters():
        e = ref_params[name].grad
        if e.norm().item() < 1e-10:  # a conv bias before an InstanceNorm: exactly 0
            assert p.grad.abs().max().item() <= FP32_NETWORK * largest, f"{what} grad {name}"
        else:
            assert_close(p.grad, e, FP32_NETWORK, f"{what} grad {name}")
    ref_buffers = dict(theirs64.named_buffers())
    for name, b in ours.named_buffers():
        assert_close(b, ref_buffers[name], FP32_NETWORK, f"{what} buffer {name}")


@pytest.mark.parametrize("norm, n_layers", [("batch", 3), ("instance", 2)])
def test_every_layer_fused_matches_reference(monkeypatch, norm, n_layers):
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")  # the fused conv is Triton's regardless
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    calls = _count_fused_convs(monkeypatch)
    _poison_allocations(monkeypatch)
    ours, theirs64 = _pair(norm, n_layers)
    _compare(ours, theirs64, True, f"patchgan-{norm} train")
    assert calls[0] == n_layers + 2
    if norm == "batch":  # eval: the running statistics in the prologues
        ours.zero_grad()
        theirs64.zero_grad()
        _compare(ours, theirs64, False, f"patchgan-{norm} eval")
        assert calls[0] == 2 * (n_layers + 2)


def test_a_table_fuses_only_the_layers_it_lists(monkeypatch, tmp_path):
    """The second conv (16x16 -> 8x8, batch norm) fused, its neighbours not: the pending norm
    + LeakyReLU is applied before the module conv after it."""
    table = tmp_path / "conv_choice.json"
    table.write_text(json.dumps({"fused": [dict(norm="batch", dtype="float32",
                                                input=[2, 4, 16, 16], weight=[8, 4, 4, 4],
                                                stride=2, padding=1)]}))
    monkeypatch.setattr(conv_choice, "TABLE", table)
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = _count_fused_convs(monkeypatch)
    _poison_allocations(monkeypatch)
    ours, theirs64 = _pair("batch", 3)
    _compare(ours, theirs64, True, "patchgan-table")
    assert calls[0] == 1


@pytest.mark.parametrize("override", [None, "module"])
def test_without_the_override_or_a_table_no_layer_is_fused(monkeypatch, override):
    if override is None:
        monkeypatch.delenv("FASTP2P_CONV", raising=False)
    else:
        monkeypatch.setenv("FASTP2P_CONV", override)
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    assert conv_choice.fused_layers(conv_choice.TABLE) == frozenset()  # none is committed
    calls = _count_fused_convs(monkeypatch)
    ours, theirs64 = _pair("batch", 2)
    _compare(ours, theirs64, True, "patchgan-default")
    assert calls[0] == 0


def test_bad_override_and_unfusable_input_say_what_to_do(monkeypatch):
    ours, _ = _pair("instance", 2)
    monkeypatch.setenv("FASTP2P_CONV", "yes")
    with pytest.raises(ValueError, match="FASTP2P_CONV must be one of"):
        ours(torch.rand(1, 6, 32, 32))
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    with pytest.raises(ValueError, match="cannot run this layer"):
        ours.double()(torch.rand(1, 6, 32, 32, dtype=torch.float64))
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # CPU tensors without the interpreter
    with pytest.raises(ValueError, match="it needs Triton"):
        ours.float()(torch.rand(1, 6, 32, 32))
