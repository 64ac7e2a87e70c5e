"""`fastp2p info`'s CPU line says that float32 training leaves the C++ kernels for PyTorch's own
norm ops, as the dispatcher does (fastp2p.ops.norm_act_torch) and the README says: `fastp2p
train` on a CPU is float32 training, so "cpp" alone named kernels it does not run."""
import importlib

import pytest
import torch

import fastp2p.ops
from fastp2p import info
from fastp2p.ops import backend_name_for
from fastp2p.ops.backends import cpp as cpp_backend

# the module (fastp2p.ops.norm_act is also the name of its function)
norm_act_module = importlib.import_module("fastp2p.ops.norm_act")


def test_the_cpp_line_says_float32_training_runs_torchs_own_norm_ops(monkeypatch):
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setattr(fastp2p.ops, "backend_name_for", lambda device: "cpp")
    assert info._backend_line(torch.device("cpu")) == (
        "cpp: the CPU kernels of fastp2p._C; float32 training runs PyTorch's own norm ops "
        "instead (measured faster there)")


@pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C was not built")
def test_what_the_line_says_is_what_a_float32_training_call_runs(monkeypatch):
    """The line's claim, checked against the dispatch itself: a float32 CPU norm-act call that
    records autograd runs norm_act_torch, one that does not runs the kernels. (The test session
    forces the reference backend and may have the interpreter on: as a user runs, neither.)"""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert backend_name_for(torch.device("cpu")) == "cpp"
    calls = []
    real = norm_act_module.norm_act_torch
    monkeypatch.setattr(norm_act_module, "norm_act_torch",
                        lambda *args: calls.append(args) or real(*args))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        fastp2p.ops.norm_act(x, norm="instance", activation="relu")
    assert calls == []
    fastp2p.ops.norm_act(x.requires_grad_(), norm="instance", activation="relu").sum().backward()
    assert len(calls) == 1
    assert "float32 training runs PyTorch's own norm ops" in info._backend_line(
        torch.device("cpu"))
