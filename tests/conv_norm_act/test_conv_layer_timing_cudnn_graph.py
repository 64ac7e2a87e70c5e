"""benchmarks/conv_layer_timing.py's third provider, cudnn_graph (cuDNN fusion graphs), on a CPU:
without the package its rows say "not installed" and the other providers are still timed;
layers the graphs do not cover say "unsupported" and why; with a stand-in frontend
(tests/helpers/cudnn_frontend_stand_in.py) it is timed like the others, its row records the
graph variants built, and every row names its fastest provider. The fused Triton provider is
left out here (test_conv_layer_timing_rows.py runs it through the interpreter); the timer is
replaced by two plain calls."""
import sys

import pytest
import torch

from fastp2p.ops.backends import cudnn_graphs
from helpers import cudnn_frontend_stand_in as stand_in
from helpers.benchmark_scripts import load_benchmark_script

TIMING = load_benchmark_script("conv_layer_timing")
TABLE = load_benchmark_script("conv_choice_table")
UNET = TABLE.unet_layers(ngf=2, num_downs=5, side=32)
PATCHGAN = TABLE.patchgan_layers(ndf=2, n_layers=3, side=32)


@pytest.fixture
def timing(monkeypatch):
    """measure() with the cudnn and cudnn_graph providers, each call timed as two calls; the
    module's caches empty. Returns the list of (provider call count) timings."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    monkeypatch.setattr(TIMING, "PROVIDERS", ("cudnn", "cudnn_graph"))
    monkeypatch.setattr(cudnn_graphs, "_FRONTEND", {})
    monkeypatch.setattr(cudnn_graphs, "_BUILT", {})
    monkeypatch.setattr(cudnn_graphs, "_HANDLES", {})
    calls = []

    def twice(fn, device, quick=False):
        fn()
        fn()
        calls.append(1)
        return (1.0, 0.9, 1.1) if len(calls) % 2 else (0.5, 0.45, 0.55)
    monkeypatch.setattr(TIMING, "time_ms", twice)
    return calls


def _measure(layer, norm):
    return TIMING.measure(layer, 2, norm, torch.device("cpu"), quick=True, dtype=torch.float32)


def test_without_the_package_the_rows_say_not_installed(monkeypatch, timing):
    monkeypatch.setitem(sys.modules, "cudnn", None)
    rows = _measure(UNET[2], "batch")
    assert [(r["mode"], r["network_mode"]) for r in rows] == [
        ("forward", "train"), ("forward", "eval"), ("forward+backward", "train")]
    assert len(timing) == 3  # cudnn + norm-act in each row; nothing timed for the graphs
    for row in rows:
        assert row["cudnn"] is not None and row["cudnn_graph"] is None
        assert row["cudnn_graph_error"].startswith("not installed: nvidia-cudnn-frontend")
        assert row["fastest"] == "cudnn"
        assert "cudnn_graph_variants" not in row


@pytest.mark.parametrize("layer, norm, reason", [
    (UNET[2], "instance", "instance norm"),
    (UNET[7], "batch", "transposed"),
    (PATCHGAN[3], "instance", "instance norm"),
])
def test_layers_the_graphs_do_not_cover_say_unsupported(monkeypatch, timing, layer, norm,
                                                        reason):
    monkeypatch.setitem(sys.modules, "cudnn", stand_in.as_module())
    for row in _measure(layer, norm):
        assert row["cudnn_graph"] is None
        assert row["cudnn_graph_error"].startswith("unsupported: ")
        assert reason in row["cudnn_graph_error"]


def test_with_a_frontend_the_graphs_are_timed_and_the_fastest_named(monkeypatch, timing):
    """The stand-in executes the graphs on the CPU; the timer gives the second provider of
    each mode the smaller median, so cudnn_graph is each row's fastest."""
    monkeypatch.setitem(sys.modules, "cudnn", stand_in.as_module())
    monkeypatch.setattr(stand_in.pygraph, "refuse", staticmethod(lambda graph: False))
    monkeypatch.setattr(cudnn_graphs, "check_available", lambda device=None: None)
    rows = _measure(PATCHGAN[3], "batch")   # stride 1, a batch norm on both sides
    assert len(timing) == 6  # forward in train and eval mode, forward+backward
    for row in rows:
        assert row["cudnn_graph"] == dict(median_ms=0.5, p20_ms=0.45, p80_ms=0.55)
        assert row["fastest"] == "cudnn_graph"
    # what was built for the layer's shapes so far: the eval forward's graph (no statistics)
    # is one more forward graph
    assert rows[0]["cudnn_graph_variants"] == "forward: scale/shift float32"
    assert rows[1]["cudnn_graph_variants"] == "; ".join(["forward: scale/shift float32"] * 2)
    assert rows[2]["cudnn_graph_variants"] == ("forward: scale/shift float32; "
                                               "forward: scale/shift float32; "
                                               "dgrad: scale/shift float32; "
                                               "wgrad: scale/shift float32")
    table = TABLE.choice_table(rows, "GPU X")
    assert [f["provider"] for f in table["fastest"]] == ["cudnn_graph", "cudnn_graph"]
    assert table["fused"] == {"forward": [], "forward+backward": []}
    assert table["routed"] == ["cudnn", "fused"]


def test_a_graph_cudnn_declines_is_a_row_not_a_crash(monkeypatch, timing):
    monkeypatch.setitem(sys.modules, "cudnn", stand_in.as_module())
    monkeypatch.setattr(stand_in.pygraph, "refuse", staticmethod(lambda graph: True))
    monkeypatch.setattr(cudnn_graphs, "check_available", lambda device=None: None)
    rows = _measure(UNET[2], "batch")
    for row in rows:
        assert row["cudnn_graph_error"].startswith("unsupported: forward graph: cuDNN has no "
                                                   "engine")
        assert row["cudnn_graph_variants"].startswith("forward: unsupported")
        assert row["fastest"] == "cudnn"
