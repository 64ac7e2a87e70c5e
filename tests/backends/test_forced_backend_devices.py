"""FASTP2P_BACKEND forcing a backend onto a device whose kernels it has only for some ops: those
run its kernels, the others the reference's (as for a launcher it lacks), warned once and named
by `fastp2p info`. No GPU needed: routing reads only torch.device("cuda"), and the reference
launcher runs meta tensors."""
import warnings

import pytest
import torch

from fastp2p import info
from fastp2p.ops import backends
from fastp2p.ops.backends import cpp as cpp_backend

CUDA = torch.device("cuda")
pytestmark = pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C not built")


@pytest.fixture
def cpp_forced(monkeypatch):
    monkeypatch.setattr(backends, "_resolved", {})
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")


def test_forced_cpp_runs_cuda_losses_on_the_reference(monkeypatch, cpp_forced):
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: True)
    backend = backends.backend_for(CUDA, torch.float32)
    assert backend.NAME == "cpp"
    assert backend.norm_act_fwd is cpp_backend.norm_act_fwd
    assert not backend.provides("gan_loss_fwd")
    logits = torch.empty(1, 1, 30, 30, device="meta")
    with pytest.warns(RuntimeWarning, match="the cpp backend has no gan_loss_fwd for cuda"):
        loss, grad = backend.gan_loss_fwd(logits, mode="vanilla", target_is_real=True)
    assert grad.shape == logits.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per backend and launcher
        backend.gan_loss_fwd(logits, mode="vanilla", target_is_real=True)


def test_forced_cpp_without_cuda_kernels_runs_all_of_cuda_on_the_reference(monkeypatch,
                                                                           cpp_forced):
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: False)
    backend = backends.backend_for(CUDA, torch.float32)
    assert not backend.provides("norm_act_fwd")
    assert "norm_act_fwd" in backend.reference_fallbacks()


def test_forced_cpp_on_cpu_keeps_its_own_loss_kernels(cpp_forced):
    backend = backends.backend_for(torch.device("cpu"), torch.float32)
    assert backend.gan_loss_fwd is cpp_backend.gan_loss_fwd


def test_info_names_the_launchers_a_forced_backend_borrows(monkeypatch, cpp_forced):
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: True)
    assert info._backend_line(CUDA) == (
        "cpp: forced by FASTP2P_BACKEND=cpp; the reference's gan_loss_fwd, l1_loss_fwd, "
        "d_step_losses_fwd, g_step_losses_fwd")
