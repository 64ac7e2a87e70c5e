"""benchmarks/conv_layer_timing.py's providers run on the CPU (float32, Triton interpreter, tiny
layers) and give rows the table writer takes: both providers timed in both modes, each row
carrying the layer's table entry (test_conv_layer_timing_eval.py: the eval rows). The timer is
replaced by two plain calls (the interpreter is no benchmark); on a GPU it is
kernel_timing.time_ms."""
import pytest
import torch

from helpers.benchmark_scripts import load_benchmark_script
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]

TIMING = load_benchmark_script("conv_layer_timing")
TABLE = load_benchmark_script("conv_choice_table")
UNET = TABLE.unet_layers(ngf=2, num_downs=5, side=32)
PATCHGAN = TABLE.patchgan_layers(ndf=2, n_layers=3, side=32)


@pytest.mark.parametrize("layer, norm", [
    (UNET[0], "batch"),       # image side, no norm on either side
    (UNET[2], "instance"),    # a norm on both sides
    (UNET[7], "batch"),       # decoder: skip and up as two sources
    (PATCHGAN[3], "instance"),  # stride 1
])
def test_both_providers_give_rows_for_the_table(monkeypatch, layer, norm):
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = []

    def twice(fn, device, quick=False):
        fn()
        fn()
        calls.append(1)
        return 1.0, 0.9, 1.1
    monkeypatch.setattr(TIMING, "time_ms", twice)
    rows = TIMING.measure(layer, 2, norm, torch.device("cpu"), quick=True, dtype=torch.float32)
    # a batch norm next to the layer: its forward timed in eval mode too
    eval_too = norm == "batch" and layer is not UNET[0]
    assert [(r["mode"], r["network_mode"]) for r in rows] == (
        [("forward", "train")] + [("forward", "eval")] * eval_too
        + [("forward+backward", "train")])
    assert len(calls) == 2 * len(rows)
    for row in rows:
        assert row["cudnn"] is not None and row["fused"] is not None, row
        assert row["entry"] == TABLE.layer_entry(layer, 2, norm, "float32")
    # equal timings: no win beyond the noise
    assert TABLE.choice_table(rows, "cpu")["fused"] == {"forward": [], "forward+backward": []}
