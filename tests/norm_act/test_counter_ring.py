"""The arrival-counter ring of the norm-act kernels' last-program reductions
(``fastp2p.kernels.norm_act._counters``): zeroed once per device, refused inside a CUDA-graph
capture (the fill would only be recorded, and eager calls before the first replay would read
stale memory), slots handed out without overlap until the ring wraps."""
import pytest
import torch


def _kernels():
    import fastp2p.kernels.norm_act
    return fastp2p.kernels.norm_act


@pytest.fixture
def fresh_rings(monkeypatch):
    kernels = _kernels()
    monkeypatch.setattr(kernels, "_counter_rings", {})
    return kernels


def test_a_first_call_inside_a_capture_is_refused_with_what_to_do(fresh_rings, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="inside a CUDA-graph capture; run one eager"):
        fresh_rings._counters(torch.device("cuda", 0), 4)
    assert fresh_rings._counter_rings == {}  # nothing half-made for the next call


def test_slots_are_zeroed_disjoint_and_wrap_at_the_ring_length(fresh_rings):
    device = torch.device("cpu")
    first = fresh_rings._counters(device, 3)
    second = fresh_rings._counters(device, 5)
    ring, _ = fresh_rings._counter_rings[device]
    assert ring.dtype == torch.int32 and not ring.any()
    assert second.data_ptr() == first.data_ptr() + 3 * ring.element_size()
    near_end = fresh_rings._COUNTER_RING - 8 - 2
    fresh_rings._counters(device, near_end)
    wrapped = fresh_rings._counters(device, 4)  # would run past the end: starts over
    assert wrapped.data_ptr() == ring.data_ptr()
    assert len(fresh_rings._counter_rings) == 1  # one ring per device, allocated once
