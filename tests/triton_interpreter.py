"""Run fastp2p's Triton kernels through the interpreter in CPU tests.

TRITON_INTERPRET=1 must be set before the kernels are built and stay set (triton checks it
again later). Because the dispatcher would then route every CPU op in the session through the
(slow) interpreter, FASTP2P_BACKEND defaults to "reference" here: other test modules keep the
plain-PyTorch path they would have without TRITON_INTERPRET, and kernel tests opt in with the
``triton_backend`` fixture (``monkeypatch.setenv("FASTP2P_BACKEND", "triton")``).
"""
import importlib
import os


def interpreted_kernels():
    """The Triton backend module built by the interpreter, or None without triton."""
    if importlib.util.find_spec("triton") is None:
        return None
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("FASTP2P_BACKEND", "reference")
    backend = importlib.import_module("fastp2p.kernels.backend")
    return backend if backend.INTERPRETED else None
