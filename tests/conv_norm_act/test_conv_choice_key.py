"""The conv choice table's key (fastp2p/ops/backends/conv_choice.py): a table routes a layer
only on the device it was measured on (its "device", conv_choice.device_name) and only in the
direction it was measured in ("forward": calls without a gradient; "forward+backward":
training calls). A table of the first format (no device, one list) is refused, saying why.
No Triton needed: a stand-in says a backend exists (the choice is asked, nothing launches)."""
import json

import pytest
import torch

from fastp2p.ops.backends import conv_choice
from helpers.conv_tables import use_conv_table

# A float32 4x4 stride-2 conv with a batch norm after it, as a table lists it.
LAYER = dict(norm="batch", dtype="float32", input=[2, 4, 16, 16], weight=[8, 4, 4, 4],
             stride=2, padding=1)
# What a GPU run writes: a bfloat16 layer of U-Net-256 at batch 64.
GPU_LAYER = dict(norm="batch", dtype="bfloat16", input=[64, 64, 128, 128],
                 weight=[128, 64, 4, 4], stride=2, padding=1)


@pytest.fixture(autouse=True)
def a_backend(monkeypatch):
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())


def _layer_dtype(gradient=True):
    return conv_choice.fused_conv_dtype(torch.rand(2, 4, 16, 16), torch.rand(8, 4, 4, 4),
                                        stride=2, padding=1, norm="batch", gradient=gradient)


def test_a_table_of_another_device_routes_no_layer(monkeypatch, tmp_path):
    use_conv_table(monkeypatch, tmp_path / "cpu.json", [LAYER])
    assert _layer_dtype() == torch.float32
    use_conv_table(monkeypatch, tmp_path / "h200.json", [LAYER], device="NVIDIA H200")
    assert _layer_dtype() is None


@pytest.mark.parametrize("mode", conv_choice.MODES)
def test_a_direction_routes_only_calls_of_that_direction(monkeypatch, tmp_path, mode):
    """forward (timed without a gradient) routes inference, forward+backward training."""
    use_conv_table(monkeypatch, tmp_path / "table.json", [LAYER], modes=(mode,))
    for gradient in (False, True):
        routed = conv_choice.mode(gradient) == mode
        assert (_layer_dtype(gradient) is not None) == routed


def test_a_table_of_the_first_format_is_refused(tmp_path):
    """Its one list, measured forward+backward, named no device: refused, saying why."""
    path = tmp_path / "conv_choice.json"
    path.write_text(json.dumps({"device": "NVIDIA H200", "fused": [GPU_LAYER]}))
    with pytest.raises(ValueError, match="format 2.*neither the GPU they were measured on nor "
                                         "the direction"):
        conv_choice.fused_layers(path)


@pytest.mark.parametrize("table", [
    {"format": 2, "fused": {"forward": []}},                          # no device
    {"format": 2, "device": "cpu", "fused": {"backward": []}},        # not a direction
    {"format": 2, "device": "cpu", "fused": [GPU_LAYER]},             # a list
    {"format": 2, "device": "cpu", "fused": {"forward": [{"norm": "batch"}]}}])
def test_a_damaged_table_is_refused(tmp_path, table):
    path = tmp_path / "conv_choice.json"
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match="is not a readable conv choice table"):
        conv_choice.fused_layers(path)
