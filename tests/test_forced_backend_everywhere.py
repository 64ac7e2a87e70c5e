"""A forced FASTP2P_BACKEND runs every fused call, the ones measured rules give to torch's own
ops by default included (the backend choice lives in fastp2p/ops only), and the networks reach
kernels/ through fastp2p.ops."""
import ast
from pathlib import Path

import pytest
import torch

import fastp2p
import fastp2p.nn.fused
import fastp2p.ops.backends.reference as reference
import fastp2p.ops.losses
from fastp2p.ops.backends import cpp
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import random_batches, tiny_networks

CHECKOUT = Path(__file__).resolve().parents[1]


@pytest.fixture
def registry_default(monkeypatch):
    """No backend forced and no interpreter: a user's CPU."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def reference_norm_act_calls(monkeypatch):
    """The number of calls of the reference backend's norm_act_fwd, kept in a one-item list."""
    return _counted(monkeypatch, reference, "norm_act_fwd")


@pytest.fixture
def fused_op_calls(monkeypatch):
    """The number of the U-Net forward's calls of the fused norm-act ops (any backend): counted
    at the op, which the default CPU backend (the C++ one) reaches too."""
    calls = _counted(monkeypatch, fastp2p.nn.fused, "norm_act")
    return _counted(monkeypatch, fastp2p.nn.fused, "norm_act_concat", calls)


def _counted(monkeypatch, owner, name, calls=None):
    """Replace ``owner.name`` with a wrapper counting its calls in ``calls`` (a one-item list,
    new unless given), which it returns."""
    calls, original = calls or [0], getattr(owner, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, counted)
    return calls


def _eval_batch_norm_unet_forward():
    torch.manual_seed(0)
    unet = fastp2p.UNet(3, 3, 5, ngf=8, norm="batch").eval()
    with torch.no_grad():
        unet(torch.randn(1, 3, 32, 32))


def test_forced_reference_backend_runs_the_eval_unet_activations(monkeypatch,
                                                                 reference_norm_act_calls):
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    _eval_batch_norm_unet_forward()
    # the folded U-Net's layers are activations only: every one reaches the registry
    assert reference_norm_act_calls[0] > 0


def test_unforced_cpu_eval_unet_keeps_torch_activations(registry_default, fused_op_calls):
    _eval_batch_norm_unet_forward()
    assert fused_op_calls[0] == 0


@pytest.mark.skipif(not cpp.available(), reason="fastp2p._C was not built")
def test_forced_cpp_backend_runs_the_eval_unet_activations(monkeypatch, fused_op_calls):
    """The same forward with the default CPU backend forced: the fused ops run it."""
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    _eval_batch_norm_unet_forward()
    assert fused_op_calls[0] > 0


@pytest.mark.parametrize("forced,fused", [("reference", True), ("", False)],
                         ids=["forced-reference", "unforced"])
def test_engine_l1_follows_a_forced_backend(monkeypatch, registry_default, forced, fused):
    monkeypatch.setenv("FASTP2P_BACKEND", forced)
    # counted at the op (l1_loss_for hands it out), which every backend's launcher is under
    calls = _counted(monkeypatch, fastp2p.ops.losses, "l1_loss")
    engine = Pix2PixEngine(*tiny_networks())
    engine.step(*random_batches(1)[0])
    assert (calls[0] > 0) is fused


def _kernel_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastp2p.kernels"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("fastp2p.kernels"))


@pytest.mark.parametrize("path", sorted((CHECKOUT / "fastp2p" / "nn").rglob("*.py")),
                         ids=lambda p: p.name)
def test_networks_reach_kernels_through_ops(path):
    assert list(_kernel_imports(path)) == []
