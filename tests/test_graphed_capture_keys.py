"""What fastp2p.graphed keys a capture on and when it captures again, checked on the CPU (the
signature function, and GraphedModule's choices through stand-in captures like those of
tests/helpers/graph_stand_in.py): the autocast dtype and a string setting, but no private
attribute and no tuple holding a tensor; a changed weight is a new capture, a replay reads the
new input and its result is the caller's own copy, train-mode replays are not mistaken for
changed weights, ``clear()`` drops the captures (and ``repr`` counts them), and a capture's
autocast keeps the caller's dtype without its cache."""
import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn.graph_replay import (GraphedModule, _autocast_without_cache, _Capture,
                                     _is_setting, _ModuleTensors)
from helpers.graph_stand_in import OnCuda, capture_on_the_cpu


class _ForwardGraph:
    """A stand-in CUDA graph whose replay runs the forward on the static input into the static
    output, as a real replay does (set up by ``_replaying_captures``)."""

    def __init__(self, module):
        self.module, self.replays = module, 0
        self.static_input = self.static_output = None

    def replay(self):
        self.replays += 1
        self.static_output.copy_(self.module(self.static_input))


def _replaying_captures(monkeypatch) -> list:
    """Captures as GraphedModule._capture makes them (an eager forward, then the captured one,
    with the tensors it changed), their graphs replaying the forward; returns the graphs."""
    graphs = []

    def capture(self, input):
        static_input = input.as_subclass(torch.Tensor).clone()
        output = self.module(static_input)
        before = self._tensors.state()
        graph = _ForwardGraph(self.module)
        graph.static_input, graph.static_output = static_input, self.module(static_input)
        after = self._tensors.state()
        graphs.append(graph)
        return output, _Capture(graph, static_input, graph.static_output, after,
                                self._tensors.changed(before, after), [])
    monkeypatch.setattr(GraphedModule, "_capture", capture)
    return graphs


def _net():
    torch.manual_seed(0)
    return fastp2p.UNet(3, 3, 5, 4).eval()


def _image(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1


def _eager(net, x):
    with torch.no_grad():
        return net(x.as_subclass(torch.Tensor))


def test_the_autocast_dtype_is_part_of_the_signature():
    tensors, x = _ModuleTensors(_net()), _image()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = tensors.signature(x)
    with torch.autocast("cpu", dtype=torch.float16):
        fp16 = tensors.signature(x)
    assert bf16 != fp16 and tensors.signature(x) not in (bf16, fp16)


def test_what_is_and_is_not_a_setting():
    assert _is_setting("padding_mode", "zeros") and _is_setting("stride", (2, 2))
    assert not _is_setting("_private", 1) and not _is_setting("_mode", "x")
    assert not _is_setting("stride", (2, torch.ones(1)))   # a tuple holding a tensor


def test_a_string_setting_changes_the_signature_and_a_private_attribute_does_not():
    net = _net()
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    conv._note = 1     # private: not something a forward bakes into a graph
    tensors, x = _ModuleTensors(net), _image()
    base = tensors.signature(x)
    conv._note = 2
    assert tensors.signature(x) == base
    conv.padding_mode = "reflect"
    assert tensors.signature(x) != base


def test_a_weight_changed_in_place_is_captured_again(monkeypatch):
    net = _net()
    captured = capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(net)
    x = _image().as_subclass(OnCuda)
    translate(x)
    translate(x)
    assert len(captured) == 1
    with torch.no_grad():
        next(net.parameters()).mul_(1.5)   # as an optimizer step does
    out = translate(x)
    assert len(captured) == 2
    assert torch.equal(out, _eager(net, x))


def test_a_replays_result_is_a_copy_the_next_call_does_not_touch(monkeypatch):
    net = _net()
    capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(net)
    x = _image().as_subclass(OnCuda)
    translate(x)                  # capture
    first = translate(x)          # replay
    first.add_(1)                 # the caller's to change
    assert torch.equal(translate(x), _eager(net, x))


def test_a_replay_reads_the_new_input(monkeypatch):
    net = _net()
    graphs = _replaying_captures(monkeypatch)
    translate = fastp2p.graphed(net)
    translate(_image(1).as_subclass(OnCuda))               # capture
    for seed in (2, 3):
        x = _image(seed).as_subclass(OnCuda)
        assert torch.equal(translate(x), _eager(net, x))   # replayed on this input
    assert [graph.replays for graph in graphs] == [2]


def test_train_mode_replays_are_not_taken_for_changed_weights(monkeypatch):
    """A train-mode replay changes the BatchNorm statistics itself (their versions bumped, as
    an eager forward would): the next call replays again rather than capturing anew."""
    net = _net().train()
    graphs = _replaying_captures(monkeypatch)
    translate = fastp2p.graphed(net)
    for seed in range(4):
        translate(_image(seed).as_subclass(OnCuda))
    assert [graph.replays for graph in graphs] == [3]
    with torch.no_grad():
        next(net.parameters()).mul_(1.5)                   # an optimizer step: capture again
    translate(_image(5).as_subclass(OnCuda))
    assert [graph.replays for graph in graphs] == [3, 0]


def test_clear_drops_every_capture_and_repr_counts_them(monkeypatch):
    net = _net()
    captured = capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(net)
    translate(_image().as_subclass(OnCuda))
    translate(torch.cat([_image(), _image(2)]).as_subclass(OnCuda))   # another shape
    assert repr(translate) == "GraphedModule(UNet, 2 captures)"
    translate.clear()
    assert repr(translate) == "GraphedModule(UNet, 0 captures)"
    translate(_image().as_subclass(OnCuda))
    assert len(captured) == 3     # captured again after clear()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_captures_autocast_keeps_the_callers_dtype_without_its_cache(dtype):
    with torch.autocast("cpu", dtype=dtype):
        with _autocast_without_cache("cpu"):
            assert torch.is_autocast_enabled("cpu")
            assert torch.get_autocast_dtype("cpu") == dtype
            assert not torch.is_autocast_cache_enabled()
    with _autocast_without_cache("cpu"):
        assert not torch.is_autocast_enabled("cpu")
