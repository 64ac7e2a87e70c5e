"""Both measured choice tables (cuda_choice's per-shape norm-act table, conv_choice's per-layer
table) are read by one reader, choice_tables.read_table: the same one-line ValueError naming the
file for a damaged table, and the same device rule (a table routes calls only on the GPU model
it names: DESIGN §6). No GPU needed: the CUDA device's name is stood in for."""
import json

import pytest
import torch

from fastp2p.ops.backends import choice_tables, conv_choice, cuda_choice

SHAPE = [1, 512, 4, 4]


class _CudaOutput:
    """What prefers_cpp reads of a CUDA conv output."""
    device = torch.device("cuda", 0)
    dtype = torch.bfloat16
    shape = torch.Size(SHAPE)


def _write(tmp_path, table):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    return path


@pytest.mark.parametrize("table", [
    {"device": "NVIDIA H200", "cpp": [{"norm": "batch", "dtype": "bfloat16"}]},  # no shape
    {"device": "NVIDIA H200", "cpp": [1, 2]},
    {"device": "NVIDIA H200", "cpp": [{"norm": "batch", "dtype": "bfloat16", "shape": 4}]},
    {"cpp": [{"norm": "batch", "dtype": "bfloat16", "shape": SHAPE}]},            # no device
    [1, 2]])
def test_a_damaged_cuda_choice_table_is_one_line_naming_the_file(tmp_path, table):
    path = _write(tmp_path, table)
    with pytest.raises(ValueError, match=f"^{path} is not a readable backend choice table .*"
                                         "cuda_choice_table.py or delete it$"):
        cuda_choice.cpp_shapes.__wrapped__(path)


@pytest.mark.parametrize("table", [
    {"format": 2, "device": 7, "fused": {"forward": []}},
    {"format": 2, "device": "cpu", "fused": {"forward": [1, 2]}}])
def test_a_damaged_conv_choice_table_is_one_line_naming_the_file(tmp_path, table):
    path = _write(tmp_path, table)
    with pytest.raises(ValueError, match=f"^{path} is not a readable conv choice table .*"
                                         "or delete it$"):
        conv_choice.fused_layers.__wrapped__(path)


@pytest.mark.parametrize("gpu, routed", [("NVIDIA H200", True), ("NVIDIA H100 80GB HBM3", False)])
def test_the_cuda_choice_table_routes_only_the_gpu_it_was_measured_on(monkeypatch, tmp_path,
                                                                       gpu, routed):
    path = _write(tmp_path, {"device": "NVIDIA H200",
                             "cpp": [{"norm": "batch", "dtype": "bfloat16", "shape": SHAPE}]})
    read = cuda_choice.cpp_shapes.__wrapped__
    monkeypatch.setattr(cuda_choice, "cpp_shapes", lambda: read(path))
    monkeypatch.setattr(choice_tables, "_cuda_name", lambda index: gpu)
    assert cuda_choice.prefers_cpp("batch", _CudaOutput()) is routed
    assert not cuda_choice.prefers_cpp("instance", _CudaOutput())


def test_no_table_routes_nothing(tmp_path):
    assert cuda_choice.cpp_shapes.__wrapped__(tmp_path / "absent.json") == frozenset()
    assert conv_choice.fused_layers.__wrapped__(tmp_path / "absent.json") == frozenset()
