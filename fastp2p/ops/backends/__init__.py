"""The one registry of backends, and the one place that picks a backend for each call.

Every backend module follows the contract in ``contract.py`` (a ``Protocol`` of the launcher
signatures). ``_BACKENDS`` lists them in order of preference with the devices each serves; the
first one that is installed, serves the tensor's device and takes its dtype (its ``DTYPES``)
wins: float64, which only the reference backend computes, runs there (the reference modules,
the float64 checks of DESIGN §5 and ``.double()`` networks), float32 / bfloat16 / float16 on
the fast backends. ``FASTP2P_BACKEND=<name>`` forces one; a forced backend that does not take
the dtype is a ValueError naming the variable (forcing is how tests pin a backend: running
another one instead would test the wrong code). An op a backend lacks runs the reference
backend's launcher (one warning per backend and op); so does an op whose kernels a forced
backend does not have for the tensors' device (its module's ``launchers_on``: the C++ extension
has CUDA kernels for norm-act only), and ``reference_fallbacks`` names them for ``fastp2p info``.
``FASTP2P_PDL=1`` (programmatic dependent launch for the Triton kernels on Hopper) is read by
``fastp2p.kernels.pdl`` at each launch: kernels/ may not import this layer. Adding a backend is
a module in this folder plus one entry in ``_BACKENDS`` (fastp2p/ops/README.md).
"""
import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache

from fastp2p.kernels.environment import getenv
from fastp2p.ops.backends import cuda_choice
from fastp2p.ops.backends.contract import (CONV_FUSED, FAST_PATH_ONLY, LAUNCHERS,
                                           REFERENCE_ELSEWHERE)


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
    # measured choice table (norm_act_backend_for); FASTP2P_BACKEND=cpp forces them all (its
    # other launchers then run the reference's on CUDA: cpp.launchers_on).
    _Entry("cpp", "fastp2p.ops.backends.cpp", ("cpu",)),
    _Entry("reference", "fastp2p.ops.backends.reference", ("cuda", "cpu", "mps", "xpu")),
)
BACKEND_NAMES = tuple(b.name for b in _BACKENDS)
ENV_VAR = "FASTP2P_BACKEND"
_REFERENCE = "fastp2p.ops.backends.reference"


def backend_forced() -> bool:
    """Whether ``FASTP2P_BACKEND`` names a backend (blank is unset): a forced backend runs every
    call, those a measured rule gives to torch's own ops or to another backend included."""
    return bool((getenv(ENV_VAR) or "").strip())


class LoadedBackend:
    """A backend module seen through the contract: ``NAME``, ``DTYPES`` and every launcher of
    ``contract.LAUNCHERS`` — the module's own, or the reference's where it has none (warned once).
    Launchers are read from the module at each call, so a test can monkeypatch them there."""

    def __init__(self, module, device_type=None):
        self.module = module
        self.NAME, self.DTYPES = module.NAME, module.DTYPES
        self._warned = set()
        # Forced onto a device its entry does not list: only the launchers its module runs
        # there (launchers_on; none without one). None: every launcher the module has.
        self._device_type = device_type
        self._runs_here = None if device_type is None else frozenset(
            getattr(module, "launchers_on", lambda device: ())(device_type))

    def provides(self, launcher: str) -> bool:
        """Whether the backend has its own ``launcher`` (not the reference's fallback)."""
        return self._own(launcher) is not None

    def _own(self, launcher):
        if self._runs_here is not None and launcher not in self._runs_here:
            return None
        return getattr(self.module, launcher, None)

    def __getattr__(self, launcher):
        if launcher not in LAUNCHERS:
            return getattr(self.module, launcher)  # backend-specific extras (cuda_available)
        own = self._own(launcher)
        if own is not None:
            return own
        reference = importlib.import_module(_REFERENCE)
        lacks = launcher if self._device_type is None else (
            f"{launcher} for {self._device_type} tensors")
        if not hasattr(reference, launcher):
            raise AttributeError(f"the {self.NAME} backend has no {lacks} and the reference "
                                 f"backend none to fall back to")
        if launcher not in self._warned and launcher not in REFERENCE_ELSEWHERE:
            self._warned.add(launcher)
            warnings.warn(f"the {self.NAME} backend has no {lacks}: running the reference "
                          f"backend's", RuntimeWarning, stacklevel=2)
        return getattr(reference, launcher)

    def reference_fallbacks(self) -> tuple:
        """The launchers it runs through the reference backend, warned of (the fast paths
        aside, which have no fallback: their callers run something else; and the ops whose
        ordinary path elsewhere the reference is)."""
        return tuple(name for name in LAUNCHERS if not self.provides(name)
                     and name not in FAST_PATH_ONLY + REFERENCE_ELSEWHERE)

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


def interpreter_on() -> bool:
    """Whether TRITON_INTERPRET is set now: the only reading of it (the Triton backend takes
    it once, at import, as INTERPRETED; the registry at every call)."""
    return (getenv("TRITON_INTERPRET") or "0") not in ("", "0")


def _serves_cpu(entry: _Entry, forced: bool) -> bool:
    """Triton runs CPU tensors only when its kernels were built by the interpreter; chosen
    automatically only while TRITON_INTERPRET is still set (so a test module that builds them
    interpreted does not reroute the rest of a test session)."""
    if not entry.needs_interpreter_on_cpu:
        return True
    backend = _load(entry.module)
    return bool(getattr(backend.module, "INTERPRETED", False)) and (forced or interpreter_on())


def _takes(backend, dtypes: tuple) -> bool:
    """Whether ``backend`` computes every one of ``dtypes`` (its DTYPES)."""
    return all(dtype in backend.DTYPES for dtype in dtypes)


def _resolve(device_type: str, forced: str, dtypes: tuple) -> str:
    """The backend name for a device type and the call's tensor dtypes under
    ``FASTP2P_BACKEND=forced`` (empty: not forced)."""
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
        backend = _load(entry.module)
        if not _takes(backend, dtypes):
            wanted = [str(d) for d in dtypes if d not in backend.DTYPES]
            raise ValueError(f"{ENV_VAR}={forced}: an op on the {forced} backend expects "
                             f"{[str(d) for d in backend.DTYPES]}, got {', '.join(wanted)}; "
                             f"unset {ENV_VAR} (float64 then runs on the reference backend) "
                             f"or pass tensors of those dtypes")
        return forced
    for entry in _BACKENDS:
        if device_type not in entry.devices:
            continue
        if device_type == "cpu" and entry.needs_interpreter_on_cpu and not interpreter_on():
            continue  # without importing triton at all
        if _load(entry.module) is None:
            continue
        if device_type == "cpu" and not _serves_cpu(entry, forced=False):
            continue
        if not _takes(_load(entry.module), dtypes):
            continue
        return entry.name
    raise ValueError(f"no fastp2p backend serves device {device_type} with "
                     f"{[str(d) for d in dtypes]}")


# What _resolve answered, per (device type, FASTP2P_BACKEND, TRITON_INTERPRET, dtypes): the
# environment is read on every call (tests and users change it between calls), the registry
# walked once per combination (a refusal is not remembered: it is raised again on every call).
# Its other inputs do not change within a process: _load caches each backend's availability,
# and the Triton module's INTERPRETED is fixed when it is imported.
_resolved: dict = {}


def _resolved_for(device_type: str, dtypes: tuple) -> tuple:
    """(name, loaded backend) for ``device_type`` and ``dtypes`` under the current environment."""
    key = (device_type, getenv(ENV_VAR), getenv("TRITON_INTERPRET"), dtypes)
    resolved = _resolved.get(key)
    if resolved is None:
        name = _resolve(device_type, (key[1] or "").strip(), dtypes)
        resolved = _resolved[key] = (name, _serving(name, device_type))
    return resolved


def _serving(name: str, device_type: str):
    """The backend called ``name`` as it runs ``device_type`` tensors: itself on a device its
    entry lists; forced onto another, a view whose launchers without kernels there fall back to
    the reference (like launchers it lacks: the C++ losses are CPU code)."""
    entry = next(b for b in _BACKENDS if b.name == name)
    backend = _load(entry.module)
    if device_type in entry.devices:
        return backend
    return LoadedBackend(backend.module, device_type)


def backend_name_for(device, *dtypes) -> str:
    """Name of the backend that runs ops on ``device`` now (follows the environment each call)
    for tensors of ``dtypes`` (none given: whatever the device's first backend takes)."""
    return _resolved_for(device.type, dtypes)[0]


def reference_fallbacks(device) -> tuple:
    """The launchers that the backend running ``device`` now takes from the reference."""
    return backend_for(device).reference_fallbacks()


def backend_named(name: str):
    """The loaded backend called ``name``, or None when it is not available here."""
    return _load(next(b.module for b in _BACKENDS if b.name == name))


def backend_for(device, *dtypes):
    """The backend (launchers) for tensors on ``device`` of ``dtypes``: every op passes the
    dtypes of the tensors its launcher computes, so float64 runs on the reference backend."""
    return _resolved_for(device.type, dtypes)[1]


def norm_act_backend_for(x, norm: str):
    """The norm-act launchers for conv output ``x``: ``backend_for(x.device, x.dtype)``, except
    that on CUDA the shapes of the measured choice table (``cuda_choice``) go to the CUDA C++
    kernels.

    Dormant by default: no choice table is committed, so the CUDA C++ norm-act kernels never
    run unless a GPU run's table is committed (benchmarks/cuda_choice_table.py) or
    FASTP2P_BACKEND=cpp forces them."""
    name, backend = _resolved_for("cpu" if x.is_cpu else x.device.type, (x.dtype,))
    if name == "triton" and x.is_cuda and not backend_forced():
        cpp = backend_named("cpp")
        if (cpp is not None and _takes(cpp, (x.dtype,)) and cpp.cuda_available()
                and cuda_choice.prefers_cpp(norm, x)):
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
    if device.type == "cpu" and not interpreter_on():
        return None  # without importing triton at all
    entry = next(b for b in _BACKENDS if b.name == "triton")
    backend = _load(entry.module)
    if backend is None or (device.type == "cpu" and not _serves_cpu(entry, forced=True)):
        return None
    return backend if all(backend.provides(name) for name in CONV_FUSED) else None
