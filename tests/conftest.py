"""Shared fixtures and device marks.

- ``cuda`` tests are skipped without a CUDA GPU; ``interpreter`` tests without Triton. Nothing
  here touches CUDA at import, so the suite collects on any machine.
- ``poisoned``: every ``torch.empty*`` of the test filled with NaN (integers with their maximum),
  so an element a kernel fails to write shows up.
- ``one_thread``: torch at one intra-op thread for the test (tiny networks' ops are too small to
  split: on a shared 2-core machine two threads made an engine step ~20x slower in wall time).
- ``deterministic_cudnn``: the same convolution algorithms, without TF32, in every run of a
  CUDA test that compares two engines or two runs bit for bit.
- ``backend``: the one fixture that runs a test once per CPU backend (reference, Triton through
  the interpreter, C++), forcing it with FASTP2P_BACKEND; a test narrows the list with
  ``@pytest.mark.parametrize("backend", [...], indirect=True)``, or adds REGISTRY_DEFAULT (no
  backend forced: what a user's CPU runs).
- Shared helpers (tolerances, the interpreter set-up, input makers) live in tests/helpers/.
- FASTP2P_CPU_DECONV is ``measure`` unless set: no test (nor a command it runs) reads or writes
  the measured forms remembered in the user's cache folder.
- Each test has 600 s (pytest-timeout, pyproject.toml): a hang ends the run with every thread's
  stack instead of stalling CI.
- Golden data comes from ``../shared/reference`` beside the checkout (or $FASTP2P_REFERENCE_DIR);
  tests that need it skip with the reason when it is absent.
"""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from helpers.forced_backend import force_backend
from helpers.triton_interpreter import CPU_BACKEND_PARAMS, REGISTRY_DEFAULT

# The CPU transposed convolutions' forms are measured in each test process, never read from or
# written to the user's cache folder (tests of that file point FASTP2P_CACHE elsewhere).
os.environ.setdefault("FASTP2P_CPU_DECONV", "measure")

REFERENCE_DIR = Path(os.environ.get(
    "FASTP2P_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "reference"))


def pytest_addoption(parser, pluginmanager):
    """Where pytest-timeout is not installed (the GPU image has no package registry), its two
    settings in pyproject.toml are known here, so pytest does not warn of unknown options; no
    limit applies there."""
    if not pluginmanager.hasplugin("timeout"):
        parser.addini("timeout", "per-test limit in s (pytest-timeout, not installed: unused)")
        parser.addini("timeout_method", "pytest-timeout's method (not installed: unused)")


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    has_triton = importlib.util.find_spec("triton") is not None
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "interpreter" in item.keywords and not has_triton:
            item.add_marker(pytest.mark.skip(reason="needs triton (pip install '.[test]')"))


@pytest.fixture
def poisoned():
    """Deterministic mode for the test: PyTorch then fills uninitialised memory with NaN."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    assert torch.utils.deterministic.fill_uninitialized_memory
    assert torch.isnan(torch.empty(4)).all()
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.fixture
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def deterministic_cudnn():
    """The same convolution algorithms, without TF32, in both runs of a test (Adam turns the
    last-bit differences of two algorithms into lr-sized steps on near-zero gradients)."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
     torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = saved


@pytest.fixture(params=CPU_BACKEND_PARAMS)
def backend(request, monkeypatch):
    """The name of the backend this run of the test forces (FASTP2P_BACKEND); for
    REGISTRY_DEFAULT, none: the variable and the interpreter unset, as on a user's CPU."""
    if request.param == REGISTRY_DEFAULT:
        monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        force_backend(monkeypatch, request.param)
    return request.param


@pytest.fixture
def reference_file():
    """Path of a file in the shared reference data; skips the test if it is not there."""
    def find(name: str) -> Path:
        path = REFERENCE_DIR / name
        if not path.exists():
            pytest.skip(f"reference data {path} not found: these tests need the shared/ folder "
                        "beside the checkout (or FASTP2P_REFERENCE_DIR)")
        return path
    return find


@pytest.fixture
def golden(reference_file):
    """Load a golden tensor file from the shared reference data."""
    return lambda name: torch.load(reference_file(name), weights_only=True)


@pytest.fixture(autouse=True)
def terminal_that_draws_bars(monkeypatch):
    """TERM as an ordinary terminal's: under TERM=dumb (Emacs, some CI consoles) fastp2p draws
    no bar (fastp2p.terminal), and the tests of what a terminal shows would fail there."""
    monkeypatch.setenv("TERM", "xterm")
