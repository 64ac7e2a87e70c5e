"""The C++ backend's boundary: bad input raises ValueError naming what was expected, and a
missing extension is reported (once) instead of failing the import."""
import importlib
import json
import re
import shutil
import sys
import warnings

import pytest
import torch

from cpp_backend_helpers import cpp_backend, requires_extension

NORM_KW = dict(norm="instance", training=True, momentum=0.1, eps=1e-5, activation="relu",
               slope=0.0, dropout_p=0.0, seed=0, offset=0)


def test_extension_is_built_when_a_compiler_exists():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler here: a pure-Python install is expected")
    assert cpp_backend.available(), cpp_backend.unavailable_reason()
    assert cpp_backend.unavailable_reason() == ""


def _fwd(x, out=None, channel_offset=0, weight=None, bias=None, **overrides):
    out = torch.empty(x.shape, dtype=x.dtype) if out is None else out
    return cpp_backend.norm_act_fwd(x, weight, bias, None, None, out, channel_offset,
                                    **{**NORM_KW, **overrides})


BAD_FORWARD = {
    "3-D x": (lambda: _fwd(torch.randn(2, 3, 4)), "4-D"),
    "float64 x": (lambda: _fwd(torch.randn(1, 2, 3, 3, dtype=torch.float64)), "float32, bfloat16 or float16"),
    "offset past the end": (lambda: _fwd(torch.randn(1, 2, 3, 3), torch.empty(1, 3, 3, 3), 2), "out_channel_offset"),
    "out spatial size": (lambda: _fwd(torch.randn(1, 2, 3, 3), torch.empty(1, 2, 3, 4)), "out must have shape"),
    "out dtype": (lambda: _fwd(torch.randn(1, 2, 3, 3), torch.empty(1, 2, 3, 3, dtype=torch.bfloat16)), "dtype"),
    "weight shape": (lambda: _fwd(torch.randn(1, 2, 3, 3), weight=torch.ones(3), bias=torch.ones(3)), "shape (2,)"),
    "weight without bias": (lambda: _fwd(torch.randn(1, 2, 3, 3), weight=torch.ones(2)), "both"),
    "unknown norm": (lambda: _fwd(torch.randn(1, 2, 3, 3), norm="group"), "norm must be one of"),
    "unknown activation": (lambda: _fwd(torch.randn(1, 2, 3, 3), activation="gelu"), "activation must be one of"),
    "dropout p = 1": (lambda: _fwd(torch.randn(1, 2, 3, 3), dropout_p=1.0), "[0, 1)"),
    "float seed": (lambda: _fwd(torch.randn(1, 2, 3, 3), seed=1.5), "seed must be a Python int"),
    "int32 offset tensor": (lambda: _fwd(torch.randn(1, 2, 3, 3), offset=torch.tensor([3], dtype=torch.int32)),
                            "one int64 element"),
    "instance norm of 1x1": (lambda: _fwd(torch.randn(2, 2, 1, 1)), "more than one spatial element"),
    "batch norm of one value": (lambda: _fwd(torch.randn(1, 2, 1, 1), norm="batch"), "more than one value"),
    "empty x": (lambda: _fwd(torch.randn(0, 2, 3, 3)), "must not be empty"),
}


@requires_extension
@pytest.mark.parametrize("case", BAD_FORWARD, ids=list(BAD_FORWARD))
def test_bad_forward_input_raises_value_error(case):
    call, message = BAD_FORWARD[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@requires_extension
def test_bad_backward_and_loss_input_raise_value_error():
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match="grad_out_slice must match x"):
        cpp_backend.norm_act_bwd(torch.randn(1, 2, 3, 4), x, None, None, torch.zeros(1, 2),
                                 torch.ones(1, 2), norm="instance", activation="relu", slope=0.0,
                                 dropout_p=0.0, seed=0, offset=0)
    with pytest.raises(ValueError, match=r"mean must be the saved statistics of shape \(1, 2\)"):
        cpp_backend.norm_act_bwd(x, x, None, None, torch.zeros(2), torch.ones(2), norm="instance",
                                 activation="relu", slope=0.0, dropout_p=0.0, seed=0, offset=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        cpp_backend.gan_loss_fwd(x, mode="hinge", target_is_real=True)
    with pytest.raises(ValueError, match="y must match x"):
        cpp_backend.l1_loss_fwd(x, torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        cpp_backend.l1_loss_fwd(x.double(), x.double())


@requires_extension
def test_extension_boundary_checks_raise_value_error_too():
    """The C++ CHECK_* macros guard the raw entry points as well (pybind11 maps them to ValueError)."""
    from fastp2p import _C
    x = torch.randn(1, 2, 3, 3)
    arg = (x.data_ptr(), 0, (1, 2, 3, 3), x.stride(), -1)
    bad_out = (x.data_ptr(), 0, (1, 2, 3, 4), x.stride() + (), -1)
    with pytest.raises(ValueError, match="out .* must have size 3 in dimension 3"):
        _C.norm_act_fwd(arg, None, None, None, None, bad_out, None, None, 3, 0.1, 1e-5, 0, 0.0,
                        0.0, 0, 0, 0, 0, 1, 0, None)
    one_pixel = (x.data_ptr(), 0, (1, 2, 1, 1), (2, 1, 1, 1), -1)
    with pytest.raises(ValueError, match="batch norm in training needs more than one value"):
        _C.norm_act_fwd(one_pixel, None, None, None, None, one_pixel, arg, arg, 1, 0.1, 1e-5, 0,
                        0.0, 0.0, 0, 0, 0, 0, 1, 0, None)
    with pytest.raises(ValueError, match="dtype code"):
        _C.l1_loss_fwd((x.data_ptr(), 7, (18,), (1,), -1), arg, arg, arg, 1)


@pytest.fixture
def backend_without_extension(monkeypatch, tmp_path):
    """cpp_backend reloaded as if fastp2p._C had failed to build; restored afterwards."""
    import fastp2p
    monkeypatch.setitem(sys.modules, "fastp2p._C", None)  # makes `from fastp2p import _C` fail
    monkeypatch.delattr(fastp2p, "_C", raising=False)
    module = importlib.reload(cpp_backend)
    record = tmp_path / "_C_build.json"
    record.write_text(json.dumps({"built": False, "reason": "CompileError: no C++ compiler"}))
    monkeypatch.setattr(module, "_BUILD_INFO", record)
    yield module
    monkeypatch.undo()
    importlib.reload(cpp_backend)


def test_missing_extension_warns_once_with_the_build_reason(backend_without_extension):
    backend = backend_without_extension
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        assert backend.available() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.available() is False  # no second warning
    assert "was not built at install: CompileError: no C++ compiler" in backend.unavailable_reason()
    assert not backend.cuda_available()
    assert "no C++ compiler" in backend.cuda_unavailable_reason()
    with pytest.raises(RuntimeError, match="unavailable"):
        backend.l1_loss_fwd(torch.randn(2), torch.randn(2))


def test_setup_installs_pure_python_when_the_compiler_fails(tmp_path):
    """setup.py's build_ext with a compiler that always fails: exit 0, and the reason is recorded."""
    import os
    import subprocess
    from pathlib import Path
    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parents[1]
    if not (root / "setup.py").exists():
        pytest.skip("needs the source checkout")
    env = {**os.environ, "CC": "false", "CXX": "false", "LDSHARED": "false", "FASTP2P_CUDA": "0"}
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "temp")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SKIPPED the C++ extension" in result.stdout + result.stderr
    record = json.loads((tmp_path / "lib" / "fastp2p" / "_C_build.json").read_text())
    # CompileError, or "pybind11 is not installed" in a venv without it: either way, recorded.
    assert record["built"] is False and record["reason"]
    assert not list((tmp_path / "lib" / "fastp2p").glob("_C*.so"))
