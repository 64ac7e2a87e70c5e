"""fastp2p.graphed kept one capture per input signature for good: `fastp2p test` translating
each image at its own size (stop 55) would hold a CUDA graph, its memory pool and static
tensors, per size. It now keeps the ``max_captures`` most recently used (8 by default), driven
here on the CPU through stand-in captures (tests/helpers/graph_stand_in.py)."""
import pytest
import torch

import fastp2p
from fastp2p.nn.graph_replay import DEFAULT_MAX_CAPTURES
from helpers.graph_stand_in import OnCuda, capture_on_the_cpu


def _image(side: int):
    generator = torch.Generator().manual_seed(side)
    return (torch.rand(1, 3, side, side, generator=generator) * 2 - 1).as_subclass(OnCuda)


def _net():
    torch.manual_seed(0)
    return fastp2p.UNet(3, 3, 5, 4).eval()


def test_the_least_recently_used_capture_is_dropped_beyond_the_limit(monkeypatch):
    captured = []
    notes = capture_on_the_cpu(monkeypatch, lambda: captured[-1])
    translate = fastp2p.graphed(_net(), max_captures=2)

    def call(side):
        captured.append(side)
        return translate(_image(side))
    call(32), call(64), call(32)          # 32 is now the most recently used
    call(96)                              # a third size: 64's capture goes
    assert notes == [32, 64, 96] and len(translate._captures) == 2
    call(32)                              # still kept: replayed
    call(64)                              # dropped: captured again, and 96 goes
    assert notes == [32, 64, 96, 64]
    assert "2 captures" in repr(translate)


def test_by_default_eight_captures_are_kept(monkeypatch):
    notes = capture_on_the_cpu(monkeypatch)
    translate = fastp2p.graphed(_net())
    for side in range(32, 32 * (DEFAULT_MAX_CAPTURES + 2), 32):
        translate(_image(side))
    assert DEFAULT_MAX_CAPTURES == 8
    assert len(notes) == DEFAULT_MAX_CAPTURES + 1 and len(translate._captures) == 8


def test_a_replay_from_a_kept_capture_equals_the_eager_forward(monkeypatch):
    capture_on_the_cpu(monkeypatch)
    net = _net()
    translate = fastp2p.graphed(net, max_captures=1)
    for side in (32, 64, 32):
        x = _image(side)
        with torch.no_grad():
            expected = net(x.as_subclass(torch.Tensor))
        torch.testing.assert_close(translate(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "8"])
def test_a_limit_below_one_or_not_an_int_is_refused(limit):
    with pytest.raises(ValueError, match=r"max_captures must be an int >= 1, got"):
        fastp2p.graphed(_net(), max_captures=limit)
