"""Run fastp2p's Triton kernels through the interpreter in CPU tests.

TRITON_INTERPRET=1 must be set before the kernels are built and stay set (triton checks it
again later). Because the dispatcher would then route every CPU op in the session through the
(slow) interpreter, FASTP2P_BACKEND defaults to "reference" here: other test modules run the
plain-PyTorch reference backend (not the registry's default without TRITON_INTERPRET: the C++
kernels, and PyTorch's own ops in float32 training; the ``backend`` fixture's REGISTRY_DEFAULT
runs that), and kernel tests opt in with the ``triton_backend`` fixture
(``force_backend(monkeypatch, "triton")``, helpers/forced_backend.py).
"""
import importlib
import os

import pytest
import torch


def interpreted_kernels():
    """The Triton backend module built by the interpreter, or None without triton, and on a
    machine with a GPU (there TRITON_INTERPRET would turn the real kernels of the GPU tests
    into interpreted ones; is_available() does not initialise CUDA)."""
    if importlib.util.find_spec("triton") is None or torch.cuda.is_available():
        return None
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("FASTP2P_BACKEND", "reference")
    backend = importlib.import_module("fastp2p.ops.backends.triton")
    return backend if backend.INTERPRETED else None


KERNELS = interpreted_kernels()


def _cpp_built() -> bool:
    from fastp2p.ops.backends import cpp
    return cpp.available()


# The backends a CPU test of the ops / networks runs through, as pytest params.
CPU_BACKEND_PARAMS = [
    "reference",
    pytest.param("triton", marks=[pytest.mark.interpreter, pytest.mark.skipif(
        KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]),
    pytest.param("cpp", marks=pytest.mark.skipif(
        not _cpp_built(), reason="fastp2p._C was not built (see "
                                 "fastp2p.ops.backends.cpp.unavailable_reason())")),
]
# Those without the interpreter, for whole-network tests it would make slow.
FAST_CPU_BACKEND_PARAMS = [p for p in CPU_BACKEND_PARAMS
                           if getattr(p, "values", (p,))[0] != "triton"]
# No backend forced and no interpreter: the registry's own choice, what a user's CPU runs (the
# C++ kernels without autograd; PyTorch's own ops in float32 training, fastp2p.ops.norm_act_torch).
# The suite forces "reference" elsewhere (above), so a test reaches that route only through this.
REGISTRY_DEFAULT = "default"
