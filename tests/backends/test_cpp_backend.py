"""The C++ backend: bad input (checked once, by the ops) raises ValueError naming what was
expected before it reaches the C++ kernels, the extension's own CHECK_* macros guard direct
calls, and a missing extension is reported (once) instead of failing the import."""
import importlib
import json
import re
import shutil
import sys
import warnings

import pytest
import torch

from fastp2p.ops import gan_loss, l1_loss, norm_act, norm_act_into
from helpers.cpp_backend_helpers import cpp_backend, requires_extension

NORM_KW = dict(norm="instance", training=True, momentum=0.1, eps=1e-5, activation="relu",
               slope=0.0, dropout_p=0.0, seed=0, offset=0)


def test_extension_is_built_when_a_compiler_exists():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler here: a pure-Python install is expected")
    assert cpp_backend.available(), cpp_backend.unavailable_reason()
    assert cpp_backend.unavailable_reason() == ""


@pytest.fixture
def cpp_forced(monkeypatch):
    """Arguments are checked once, at the op boundary (fastp2p.ops), not again in the adapter:
    these tests call the ops with the C++ backend forced."""
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")


def _fwd(x, out=None, channel_offset=0, weight=None, bias=None, **overrides):
    out = torch.empty(x.shape, dtype=x.dtype) if out is None else out
    return norm_act_into(x, weight, bias, None, None, out, channel_offset,
                         **{**NORM_KW, **overrides})


BAD_FORWARD = {
    "3-D x": (lambda: _fwd(torch.randn(2, 3, 4)), "x of shape (N, C, H, W)"),
    "float64 x": (lambda: _fwd(torch.randn(1, 2, 3, 3, dtype=torch.float64)),
                  "on the cpp backend expects"),
    "offset past the end": (lambda: _fwd(torch.randn(1, 2, 3, 3), torch.empty(1, 3, 3, 3), 2),
                            "do not fit a destination"),
    "out spatial size": (lambda: _fwd(torch.randn(1, 2, 3, 3), torch.empty(1, 2, 3, 4)),
                         "destination must be (1, C_out, 3, 3)"),
    "out dtype": (lambda: _fwd(torch.randn(1, 2, 3, 3),
                               torch.empty(1, 2, 3, 3, dtype=torch.bfloat16)),
                  "destination must be torch.float32"),
    "weight shape": (lambda: _fwd(torch.randn(1, 2, 3, 3), weight=torch.ones(3),
                                  bias=torch.ones(3)), "shape (2,)"),
    "weight without bias": (lambda: _fwd(torch.randn(1, 2, 3, 3), weight=torch.ones(2)), "both"),
    "unknown norm": (lambda: _fwd(torch.randn(1, 2, 3, 3), norm="group"), "norm must be one of"),
    "unknown activation": (lambda: _fwd(torch.randn(1, 2, 3, 3), activation="gelu"),
                           "activation must be one of"),
    "dropout p = 1": (lambda: _fwd(torch.randn(1, 2, 3, 3), dropout_p=1.0), "[0, 1)"),
    "float seed": (lambda: _fwd(torch.randn(1, 2, 3, 3), seed=1.5), "seed must be a Python int"),
    "int32 offset tensor": (lambda: _fwd(torch.randn(1, 2, 3, 3),
                                         offset=torch.tensor([3], dtype=torch.int32)),
                            "one int64 element"),
    "instance norm of 1x1": (lambda: _fwd(torch.randn(2, 2, 1, 1)),
                             "more than 1 spatial element"),
    "batch norm of one value": (lambda: _fwd(torch.randn(1, 2, 1, 1), norm="batch"),
                                "more than 1 value"),
    "empty x": (lambda: _fwd(torch.randn(0, 2, 3, 3)), "must not be empty"),
}


@requires_extension
@pytest.mark.parametrize("case", BAD_FORWARD, ids=list(BAD_FORWARD))
def test_bad_forward_input_raises_value_error(cpp_forced, case):
    call, message = BAD_FORWARD[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@requires_extension
def test_bad_backward_and_loss_input_raise_value_error(cpp_forced):
    """The backward's own inputs (grad_out, the saved statistics) come from autograd, which
    checks the gradient's shape itself; the losses' inputs are checked by the ops."""
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    y = norm_act(x, norm="instance", activation="relu")
    with pytest.raises(RuntimeError, match="shape"):
        y.backward(torch.randn(1, 2, 3, 4))
    x = x.detach()
    with pytest.raises(ValueError, match="mode must be one of"):
        gan_loss(x, "hinge", True)
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(x, torch.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="on the cpp backend expects"):
        l1_loss(x.double(), x.double())


@requires_extension
def test_extension_boundary_checks_raise_value_error_too():
    """The C++ CHECK_* macros guard the raw entry points as well (pybind11 maps them to
    ValueError)."""
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


def _build_with_a_failing_compiler(tmp_path, **env) -> dict:
    """setup.py's build_ext with CC, CXX and LDSHARED ``false`` and ``env`` on top: it must
    exit 0 and say it skipped the extension; the build record it writes."""
    import os
    import subprocess
    from pathlib import Path
    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parents[2]
    if not (root / "setup.py").exists():
        pytest.skip("needs the source checkout")
    env = {**os.environ, "CC": "false", "CXX": "false", "LDSHARED": "false", **env}
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "temp")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SKIPPED the C++ extension" in result.stdout + result.stderr
    return json.loads((tmp_path / "lib" / "fastp2p" / "_C_build.json").read_text())


def test_setup_installs_pure_python_when_the_compiler_fails(tmp_path):
    """setup.py's build_ext with a compiler that always fails: exit 0, the reason recorded."""
    record = _build_with_a_failing_compiler(tmp_path, FASTP2P_CUDA="0")
    # CompileError, or "pybind11 is not installed" in a venv without it: either way, recorded.
    assert record["built"] is False and record["reason"]
    assert not list((tmp_path / "lib" / "fastp2p").glob("_C*.so"))


def test_setup_finds_a_failing_compiler_out_before_running_nvcc(tmp_path):
    """A compiler that cannot build a trivial program is the reason, found by a probe before
    anything is compiled: nvcc compiled the CUDA part first (~45 s), then both builds of the
    C++ part failed, and the reason recorded was a 450-character command line."""
    import os
    toolkit = tmp_path / "cuda"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "lib64").mkdir()
    (toolkit / "lib64" / "libcudart_static.a").write_bytes(b"")
    nvcc_ran = tmp_path / "nvcc_ran"
    nvcc = toolkit / "bin" / "nvcc"  # answers the toolkit probe (--dryrun); a compile is noted
    nvcc.write_text(f'#!/bin/sh\n[ "$1" = --dryrun ] && exit 0\ntouch {nvcc_ran}\nexit 1\n')
    nvcc.chmod(0o755)
    path = os.pathsep.join([str(toolkit / "bin"), os.environ.get("PATH", "")])
    record = _build_with_a_failing_compiler(tmp_path, FASTP2P_CUDA="1", CUDA_HOME=str(toolkit),
                                            PATH=path)
    assert not nvcc_ran.exists()
    assert record["reason"] == "RuntimeError: no working C++ compiler (false)"


@pytest.mark.parametrize("env, named", [
    ({"FASTP2P_CUDA": "false"}, "FASTP2P_CUDA='false'"),
    ({"FASTP2P_CUDA": "yes"}, "FASTP2P_CUDA='yes'"),
    ({"FASTP2P_CUDA_ARCHS": ""}, "FASTP2P_CUDA_ARCHS=''"),
    ({"FASTP2P_CUDA": "1", "FASTP2P_CUDA_ARCHS": "sm_90"}, "FASTP2P_CUDA_ARCHS='sm_90'"),
], ids=["false", "yes", "empty-archs", "sm-archs"])
def test_setup_refuses_a_cuda_setting_it_does_not_take(tmp_path, env, named):
    """FASTP2P_CUDA other than 1, 0 or unset was taken as unset (FASTP2P_CUDA=false built the
    CUDA part where nvcc was found), and FASTP2P_CUDA_ARCHS="" passed arch=compute_ to nvcc:
    one line naming it, before anything is built (QA limits2, install-time note)."""
    import os
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    if not (root / "setup.py").exists():
        pytest.skip("needs the source checkout")
    clean = {name: value for name, value in os.environ.items() if not name.startswith("FASTP2P_")}
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "temp")],
        cwd=root, env={**clean, "CC": "false", "CXX": "false", "LDSHARED": "false", **env},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"fastp2p build: error: {named}: set it to "), result.stderr[-2000:]
    assert not (tmp_path / "lib").exists()
