"""Forcing a backend (FASTP2P_BACKEND) in a test whose results stand for that backend's code.

A launcher a backend lacks runs the reference backend's instead, with one warning per process
(fastp2p.ops.backends.LoadedBackend), so a test forcing that backend would then compare the
reference with float64 and pass. ``force_backend`` checks first that the backend runs its own
launchers (all but the known REFERENCE_FALLBACKS); the ``backend`` fixture and the tests that
force a backend by hand use it. Tests of the choice itself (which backend, its messages, the
fallbacks) set the variable directly.
"""
# The launchers each forced backend runs through the reference's (it has no own).
REFERENCE_FALLBACKS = {"reference": (), "triton": (),
                       "cpp": ("d_step_losses_fwd", "g_step_losses_fwd")}


def assert_backend_runs_its_own(name: str):
    """Fails where backend ``name`` would run more of the reference's launchers than its
    REFERENCE_FALLBACKS (as on CPU tensors; on CUDA the C++ one runs norm-act only)."""
    from fastp2p.ops.backends import backend_named
    backend = backend_named(name)
    assert backend is not None, f"the {name} backend is not available here"
    fallbacks = backend.reference_fallbacks()
    assert fallbacks == REFERENCE_FALLBACKS[name], (
        f"the {name} backend runs the reference's {fallbacks}, expected "
        f"{REFERENCE_FALLBACKS[name]}: its tests would test the reference")


def force_backend(monkeypatch, name: str):
    """FASTP2P_BACKEND=name for the test, once the backend is known to run its own launchers."""
    assert_backend_runs_its_own(name)
    monkeypatch.setenv("FASTP2P_BACKEND", name)
