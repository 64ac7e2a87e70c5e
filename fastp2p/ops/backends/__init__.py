"""The one registry of backends, and the one place that picks a backend for each call.

Every backend module follows the contract in ``contract.py`` (a ``Protocol`` of the launcher
signatures). ``_BACKENDS`` lists them in order of preference with the devices each serves; the
first one that is installed and serves the tensor's device wins. ``FASTP2P_BACKEND=<name>``
forces one. An op a backend lacks runs the reference backend's launcher (one warning per backend
and op). ``FASTP2P_PDL=1`` (programmatic dependent launch for the Triton kernels on Hopper) is
read by ``fastp2p.kernels.pdl`` at each launch: kernels/ may not import this layer. Adding a
backend is a module in this folder plus one entry in ``_BACKENDS`` (fastp2p/ops/README.md).
"""
import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache

from fastp2p.kernels.environment import getenv
from fastp2p.ops.backends import cuda_choice
from fastp2p.ops.backends.contract import CONV_FUSED, LAUNCHERS


@dataclass(frozen=True)
class _Entry:
    name: str
    module: str                 # import path of the module with the launchers
    devices: tuple              # device types it serves when not forced
    needs_interpreter_on_cpu: bool = False


_BACKENDS = (
    # Triton on CUDA; on CPU only through the interpreter (TRITON_INTERPRET=1, set before
    # triton is imported).
    _Entry("triton", "fastp2p.ops.backends.triton", ("cuda", "cpu"),
           needs_interpreter_on_cpu=True),
    # The C++ extension's CPU kernels. Its CUDA norm-act kernels run only the shapes of the
    # measured choice table (norm_act_backend_for); FASTP2P_BACKEND=cpp forces them all.
    _Entry("cpp", "fastp2p.ops.backends.cpp", ("cpu",)),
    _Entry("reference", "fastp2p.ops.backends.reference", ("cuda", "cpu", "mps", "xpu")),
)
BACKEND_NAMES = tuple(b.name for b in _BACKENDS)
ENV_VAR = "FASTP2P_BACKEND"
_REFERENCE = "fastp2p.ops.backends.reference"


class LoadedBackend:
    """A backend module seen through the contract: ``NAME``, ``DTYPES`` and every launcher of
    ``contract.LAUNCHERS`` — the module's own, or the reference's where it has none (warned once).
    Launchers are read from the module at each call, so a test can monkeypatch them there."""

    def __init__(self, module):
        self.module = module
        self.NAME, self.DTYPES = module.NAME, module.DTYPES
        self._warned = set()

    def provides(self, launcher: str) -> bool:
        """Whether the backend has its own ``launcher`` (not the reference's fallback)."""
        return hasattr(self.module, launcher)

    def __getattr__(self, launcher):
        if launcher not in LAUNCHERS:
            return getattr(self.module, launcher)  # backend-specific extras (cuda_available)
        own = getattr(self.module, launcher, None)
        if own is not None:
            return own
        reference = importlib.import_module(_REFERENCE)
        if not hasattr(reference, launcher):
            raise AttributeError(f"the {self.NAME} backend has no {launcher} and the reference "
                                 f"backend none to fall back to")
        if launcher not in self._warned:
            self._warned.add(launcher)
            warnings.warn(f"the {self.NAME} backend has no {launcher}: running the reference "
                          f"backend's", RuntimeWarning, stacklevel=2)
        return getattr(reference, launcher)

    def __repr__(self):
        return f"<fastp2p backend {self.NAME!r} ({self.module.__name__})>"


@lru_cache(maxsize=None)
def _load(module_path: str):
    """The backend, or None when its module cannot be imported (e.g. no triton installed) or
    reports itself unavailable."""
    try:
        module = importlib.import_module(module_path)
    except ImportError:
        return None
    return LoadedBackend(module) if module.available() else None


def _interpreter_on() -> bool:
    return (getenv("TRITON_INTERPRET") or "0") not in ("", "0")


def _serves_cpu(entry: _Entry, forced: bool) -> bool:
    """Triton runs CPU tensors only when its kernels were built by the interpreter; chosen
    automatically only while TRITON_INTERPRET is still set (so a test module that builds them
    interpreted does not reroute the rest of a test session)."""
    if not entry.needs_interpreter_on_cpu:
        return True
    backend = _load(entry.module)
    return bool(getattr(backend.module, "INTERPRETED", False)) and (forced or _interpreter_on())


def _resolve(device_type: str, forced: str) -> str:
    """The backend name for a device type under ``FASTP2P_BACKEND=forced`` (empty: not forced)."""
    if forced:
        if forced not in BACKEND_NAMES:
            raise ValueError(f"{ENV_VAR} must be one of {BACKEND_NAMES}, got {forced!r}")
        entry = next(b for b in _BACKENDS if b.name == forced)
        if _load(entry.module) is None:
            raise ValueError(f"{ENV_VAR}={forced} but that backend is not available here "
                             f"(module {entry.module} did not import); install it or unset "
                             f"{ENV_VAR}")
        if device_type == "cpu" and not _serves_cpu(entry, forced=True):
            raise ValueError(f"{ENV_VAR}={forced} on CPU tensors needs TRITON_INTERPRET=1 set "
                             "before fastp2p's kernels are imported")
        return forced
    for entry in _BACKENDS:
        if device_type not in entry.devices:
            continue
        if device_type == "cpu" and entry.needs_interpreter_on_cpu and not _interpreter_on():
            continue  # without importing triton at all
        if _load(entry.module) is None:
            continue
        if device_type == "cpu" and not _serves_cpu(entry, forced=False):
            continue
        return entry.name
    raise ValueError(f"no fastp2p backend serves device {device_type}")


# What _resolve answered, per (device type, FASTP2P_BACKEND, TRITON_INTERPRET): the environment
# is read on every call (tests and users change it between calls), the registry walked once per
# combination. Its other inputs do not change within a process: _load caches each backend's
# availability, and the Triton module's INTERPRETED is fixed when it is imported.
_resolved: dict = {}


def _resolved_for(device_type: str) -> tuple:
    """(name, loaded backend) for ``device_type`` under the current environment."""
    key = (device_type, getenv(ENV_VAR), getenv("TRITON_INTERPRET"))
    resolved = _resolved.get(key)
    if resolved is None:
        name = _resolve(device_type, (key[1] or "").strip())
        resolved = _resolved[key] = (name, backend_named(name))
    return resolved


def backend_name_for(device) -> str:
    """Name of the backend that runs ops on ``device`` now (follows the environment each call)."""
    return _resolved_for(device.type)[0]


def backend_named(name: str):
    """The loaded backend called ``name``, or None when it is not available here."""
    return _load(next(b.module for b in _BACKENDS if b.name == name))


def backend_for(device):
    """The backend (launchers) for tensors on ``device``."""
    return _resolved_for(device.type)[1]


def norm_act_backend_for(x, norm: str):
    """The norm-act launchers for conv output ``x``: ``backend_for``, except that on CUDA the
    shapes of the measured choice table (``cuda_choice``) go to the CUDA C++ kernels.

    Dormant by default: no choice table is committed, so the CUDA C++ norm-act kernels never
    run unless a GPU run's table is committed (benchmarks/cuda_choice_table.py) or
    FASTP2P_BACKEND=cpp forces them."""
    name, backend = _resolved_for("cpu" if x.is_cpu else x.device.type)
    if name == "triton" and x.is_cuda and not (getenv(ENV_VAR) or "").strip():
        cpp = backend_named("cpp")
        if cpp is not None and cpp.cuda_available() and cuda_choice.prefers_cpp(norm, x):
            return cpp
    return backend


def conv_fused_backend(device):
    """The backend whose fused-convolution launchers run tensors on ``device``, or None.

    Only Triton has them (the reference has no fallback, contract.FAST_PATH_ONLY), so this is
    Triton wherever it can run the device — CUDA, or CPU with interpreter-built kernels — even
    when FASTP2P_BACKEND picks another backend for the other ops: whether a convolution runs
    fused is the conv choice's (backends/conv_choice.py), not the backend's."""
    if device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cpu" and not _interpreter_on():
        return None  # without importing triton at all
    entry = next(b for b in _BACKENDS if b.name == "triton")
    backend = _load(entry.module)
    if backend is None or (device.type == "cpu" and not _serves_cpu(entry, forced=True)):
        return None
    return backend if all(backend.provides(name) for name in CONV_FUSED) else None
