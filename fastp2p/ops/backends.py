"""The one place that picks a backend for each call.

A backend is a module exposing ``NAME``, ``DTYPES`` (the input dtypes it computes exactly),
``available()``, ``norm_act_fwd``, ``norm_act_bwd``,
``gan_loss_fwd`` and ``l1_loss_fwd`` with the launcher signatures of HELPER_RULES. ``_BACKENDS``
lists them in order of preference with the devices each serves; the first one that is
installed and serves the tensor's device wins. ``FASTP2P_BACKEND=<name>`` forces one.
Adding a backend is one entry in ``_BACKENDS``.
"""
import importlib
import os
from dataclasses import dataclass
from functools import lru_cache

from fastp2p.ops import cuda_choice


@dataclass(frozen=True)
class _Backend:
    name: str
    module: str                 # import path of the module with the launchers
    devices: tuple              # device types it serves when not forced
    needs_interpreter_on_cpu: bool = False


_BACKENDS = (
    # Triton on CUDA; on CPU only through the interpreter (TRITON_INTERPRET=1, set before
    # triton is imported).
    _Backend("triton", "fastp2p.kernels.backend", ("cuda", "cpu"), needs_interpreter_on_cpu=True),
    # The C++ extension's CPU kernels. Its CUDA norm-act kernels run the shapes a GPU benchmark
    # found faster than Triton (norm_act_backend_for); FASTP2P_BACKEND=cpp forces them all.
    _Backend("cpp", "fastp2p.ops.cpp_backend", ("cpu",)),
    _Backend("reference", "fastp2p.ops.reference_backend", ("cuda", "cpu", "mps", "xpu")),
)
BACKEND_NAMES = tuple(b.name for b in _BACKENDS)
ENV_VAR = "FASTP2P_BACKEND"


@lru_cache(maxsize=None)
def _load(module_path: str):
    """The backend module, or None when it cannot be imported (e.g. no triton installed)."""
    try:
        module = importlib.import_module(module_path)
    except ImportError:
        return None
    return module if module.available() else None


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _serves_cpu(backend: _Backend, forced: bool) -> bool:
    """Triton runs CPU tensors only when its kernels were built by the interpreter; chosen
    automatically only while TRITON_INTERPRET is still set (so a test module that builds them
    interpreted does not reroute the rest of a test session)."""
    if not backend.needs_interpreter_on_cpu:
        return True
    module = _load(backend.module)
    return bool(getattr(module, "INTERPRETED", False)) and (forced or _interpreter_on())


def backend_name_for(device) -> str:
    """Name of the backend that runs ops on ``device`` now (reads the environment each call)."""
    forced = os.environ.get(ENV_VAR, "").strip()
    if forced:
        if forced not in BACKEND_NAMES:
            raise ValueError(f"{ENV_VAR} must be one of {BACKEND_NAMES}, got {forced!r}")
        backend = next(b for b in _BACKENDS if b.name == forced)
        if _load(backend.module) is None:
            raise ValueError(f"{ENV_VAR}={forced} but that backend is not available here "
                             f"(module {backend.module} did not import); install it or unset "
                             f"{ENV_VAR}")
        if device.type == "cpu" and not _serves_cpu(backend, forced=True):
            raise ValueError(f"{ENV_VAR}={forced} on CPU tensors needs TRITON_INTERPRET=1 set "
                             "before fastp2p's kernels are imported")
        return forced
    for backend in _BACKENDS:
        if device.type not in backend.devices:
            continue
        if device.type == "cpu" and backend.needs_interpreter_on_cpu and not _interpreter_on():
            continue  # without importing triton at all
        if _load(backend.module) is None:
            continue
        if device.type == "cpu" and not _serves_cpu(backend, forced=False):
            continue
        return backend.name
    raise ValueError(f"no fastp2p backend serves device {device}")


def _module_named(name: str):
    return _load(next(b.module for b in _BACKENDS if b.name == name))


def backend_for(device):
    """The backend module (launchers) for tensors on ``device``."""
    return _module_named(backend_name_for(device))


def norm_act_backend_for(x, norm: str):
    """The norm-act launchers for conv output ``x``: ``backend_for``, except that on CUDA the
    shapes of the measured choice table (fastp2p.ops.cuda_choice) go to the CUDA C++ kernels."""
    name = backend_name_for(x.device)
    if name == "triton" and x.is_cuda and not os.environ.get(ENV_VAR, "").strip():
        cpp = _module_named("cpp")
        if cpp is not None and cpp.cuda_available() and cuda_choice.prefers_cpp(norm, x):
            return cpp
    return _module_named(name)
