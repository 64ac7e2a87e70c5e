"""The backend contract is code: every backend's launchers have the signatures written in
fastp2p/ops/backends/contract.py, and an op a backend lacks runs the reference's, warned once."""
import importlib
import inspect
import types
import warnings

import pytest
import torch

from fastp2p.ops import backends
from fastp2p.ops.backends import LoadedBackend
from fastp2p.ops.backends.contract import FAST_PATH_ONLY, LAUNCHERS, Backend


def _parameters(function, drop_self=False):
    params = list(inspect.signature(function).parameters.values())
    if drop_self:
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def _module_or_skip(path):
    try:
        return importlib.import_module(path)
    except ImportError as error:  # triton not installed
        pytest.skip(f"{path} does not import here: {error}")


def test_the_protocol_lists_exactly_the_launchers():
    declared = [name for name, value in vars(Backend).items()
                if callable(value) and not name.startswith("_") and name != "available"]
    assert tuple(declared) == LAUNCHERS


@pytest.mark.parametrize("entry", backends._BACKENDS, ids=lambda e: e.name)
def test_every_launcher_a_backend_has_follows_the_contract(entry):
    module = _module_or_skip(entry.module)
    assert module.NAME == entry.name
    assert set(module.DTYPES) <= {torch.float32, torch.bfloat16, torch.float16, torch.float64}
    assert callable(module.available)
    own = [name for name in LAUNCHERS if hasattr(module, name)]
    assert own, f"{entry.name} implements no launcher"
    for name in own:
        assert _parameters(getattr(module, name)) == \
            _parameters(getattr(Backend, name), drop_self=True), f"{entry.name}.{name}"


def test_the_reference_backend_has_every_op_launcher():
    """The fallback target: every launcher but the fast-path-only ones."""
    reference = importlib.import_module("fastp2p.ops.backends.reference")
    missing = [name for name in LAUNCHERS if not hasattr(reference, name)]
    assert tuple(missing) == FAST_PATH_ONLY


def test_a_missing_launcher_runs_the_reference_with_one_warning():
    partial = types.SimpleNamespace(NAME="partial", DTYPES=(torch.float32,),
                                    available=lambda: True,
                                    l1_loss_fwd=lambda x, y: ("own", None))
    backend = LoadedBackend(partial)
    assert backend.provides("l1_loss_fwd") and not backend.provides("gan_loss_fwd")
    assert backend.l1_loss_fwd(None, None) == ("own", None)
    logits = torch.tensor([0.5, -1.0])
    with pytest.warns(RuntimeWarning, match="partial backend has no gan_loss_fwd"):
        loss, grad = backend.gan_loss_fwd(logits, mode="lsgan", target_is_real=True)
    expected = torch.nn.functional.mse_loss(logits, torch.ones(2))
    assert torch.allclose(loss, expected) and grad.shape == logits.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.gan_loss_fwd(logits, mode="lsgan", target_is_real=True)  # no second warning
    with pytest.raises(AttributeError, match="none to fall back to"):
        backend.conv_transpose2d_fwd
