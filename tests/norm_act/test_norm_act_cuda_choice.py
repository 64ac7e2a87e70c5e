"""The per-shape Triton / CUDA C++ choice: the table built from benchmark rows, the table read at
run time, and (on a GPU with a CUDA build of fastp2p._C) the dispatch that follows it."""
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from fastp2p.ops import norm_act
from fastp2p.ops.backends import choice_tables, cpp as cpp_backend, cuda_choice
from helpers.forced_backend import force_backend
from helpers.tolerances import FP32_SINGLE_OP, assert_close

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def builder():
    """benchmarks/cuda_choice_table.py, imported as the GPU check runs it (benchmarks/ on the
    path)."""
    sys.path.insert(0, str(CHECKOUT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "cuda_choice_table", CHECKOUT / "benchmarks" / "cuda_choice_table.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CHECKOUT / "benchmarks"))
    return module


def _row(op, norm, shape, backend, ms):
    return dict(op=op, norm=norm, dtype="bfloat16", shape=shape, backend=backend, median_ms=ms)


A, B, C = [1, 512, 4, 4], [64, 128, 64, 64], [1, 256, 32, 32]
ROWS = [
    # shape A: C++ faster -> cpp
    _row("norm_act", "batch", A, "triton", 0.020), _row("norm_act", "batch", A, "cpp", 0.012),
    # shape B: the sum over both ops decides (triton 0.9 + 0.5 < cpp 0.6 + 1.0)
    _row("norm_act", "instance", B, "triton", 0.9), _row("norm_act", "instance", B, "cpp", 0.6),
    _row("norm_act_concat", "instance", B, "triton", 0.5),
    _row("norm_act_concat", "instance", B, "cpp", 1.0),
    # shape C: no C++ row -> not compared; other backends never count
    _row("norm_act", "batch", C, "triton", 0.1), _row("norm_act", "batch", C, "reference", 0.01),
]


def test_table_gives_the_cpp_kernel_only_the_shapes_it_won(builder):
    table = builder.choice_table(ROWS, {"device": "NVIDIA H100", "commit": "abc"})
    assert table["cpp"] == [dict(norm="batch", dtype="bfloat16", shape=A)]
    compared = {(c["norm"], tuple(c["shape"])): c for c in table["compared"]}
    assert set(compared) == {("batch", tuple(A)), ("instance", tuple(B))}
    assert compared[("instance", tuple(B))]["backend"] == "triton"
    assert compared[("instance", tuple(B))]["cpp_ms"] == pytest.approx(1.6)
    assert table["device"] == "NVIDIA H100" and table["commit"] == "abc"
    with pytest.raises(ValueError, match="both the triton and the cpp"):
        builder.choice_table(ROWS[-2:])


@pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C not built")
def test_measure_times_each_backend_on_each_shape(builder):
    """The timing loop on CPU (reference vs the C++ CPU kernels): a row per op, shape and
    backend, each timed with its backend forced and the variable restored afterwards."""
    before = os.environ.get("FASTP2P_BACKEND")
    rows = builder.measure(torch.device("cpu"), backends=("reference", "cpp"), quick=True)
    assert os.environ.get("FASTP2P_BACKEND") == before
    assert len(rows) == 2 * 2 * len(builder.QUICK_LAYERS) * 2
    assert all(r["median_ms"] > 0 and r["dtype"] == "float32" for r in rows)
    assert {r["backend"] for r in rows} == {"reference", "cpp"}


def test_command_refuses_without_a_gpu(builder, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert builder.main(["--out", str(tmp_path / "t.json")]) == 1
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_runtime_reads_the_table(builder, tmp_path, monkeypatch):
    path = tmp_path / "choice.json"
    path.write_text(json.dumps(builder.choice_table(ROWS, {"device": "NVIDIA H200"})))
    assert cuda_choice.cpp_shapes(path) == {("NVIDIA H200", ("batch", "bfloat16", *A))}
    shapes = cuda_choice.cpp_shapes(path)
    monkeypatch.setattr(cuda_choice, "cpp_shapes", lambda: shapes)
    monkeypatch.setattr(cuda_choice, "device_name", lambda device: "NVIDIA H200")
    assert cuda_choice.prefers_cpp("batch", torch.empty(A, dtype=torch.bfloat16))
    assert not cuda_choice.prefers_cpp("instance", torch.empty(A, dtype=torch.bfloat16))
    assert not cuda_choice.prefers_cpp("batch", torch.empty(A, dtype=torch.float32))
    assert not cuda_choice.prefers_cpp("batch", torch.empty([2] + A[1:], dtype=torch.bfloat16))


def test_missing_table_means_triton_and_a_broken_one_says_so(tmp_path):
    assert cuda_choice.cpp_shapes.__wrapped__(tmp_path / "absent.json") == frozenset()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="cuda_choice_table.py"):
        cuda_choice.cpp_shapes.__wrapped__(broken)


@pytest.mark.cuda
def test_cuda_dispatch_follows_the_table(tmp_path, monkeypatch):
    """A shape in the table runs the CUDA C++ launcher, others Triton; both match each other."""
    if not cpp_backend.cuda_available():
        pytest.skip(cpp_backend.cuda_unavailable_reason())
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    chosen, other = [2, 64, 8, 8], [2, 64, 4, 4]
    entry = (choice_tables.device_name(torch.device("cuda")),   # the table's (device, shape)
             cuda_choice.table_key("batch", torch.float32, chosen))
    monkeypatch.setattr(cuda_choice, "cpp_shapes", lambda: frozenset({entry}))
    calls = []
    launcher = cpp_backend.norm_act_fwd
    monkeypatch.setattr(cpp_backend, "norm_act_fwd",
                        lambda *a, **k: calls.append(tuple(a[0].shape)) or launcher(*a, **k))
    for shape in (chosen, other):
        x = torch.randn(shape, device="cuda").to(memory_format=torch.channels_last)
        weight, bias = torch.rand(64, device="cuda") + 0.5, torch.randn(64, device="cuda")
        out = norm_act(x, weight, bias, norm="batch", activation="leaky_relu")
        force_backend(monkeypatch, "triton")
        expected = norm_act(x, weight, bias, norm="batch", activation="leaky_relu")
        monkeypatch.delenv("FASTP2P_BACKEND")
        assert_close(out, expected.double(), FP32_SINGLE_OP, f"shape {shape}")
    assert calls == [tuple(chosen)]
