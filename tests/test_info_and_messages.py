"""`fastp2p info` states, per device, the backend the dispatcher picks and why; a checkpoint
that does not fit says what to do on its first line."""
import sys

import pytest
import torch

import fastp2p
import fastp2p.ops
from fastp2p import info
from fastp2p.ops import backend_name_for
from fastp2p.ops.backends import cpp as cpp_backend


def test_info_names_the_dispatchers_cpu_backend(capsys):
    assert info.run(None) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  cpu "))
    assert line.split()[1].rstrip(":") == backend_name_for(torch.device("cpu"))
    assert "reference math is used" not in out  # the old, contradicting wording


def test_info_explains_the_reference_fallback(monkeypatch):
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setattr(fastp2p.ops, "backend_name_for", lambda device: "reference")
    monkeypatch.setattr(cpp_backend, "unavailable_reason", lambda: "no C++ compiler at install")
    assert info._backend_line(torch.device("cpu")) == (
        "reference: plain PyTorch math, because fastp2p._C not available (no C++ compiler at "
        "install)")
    monkeypatch.setitem(sys.modules, "triton", None)
    assert info._backend_line(torch.device("cuda")) == (
        "reference: plain PyTorch math, because triton is not installed (pip install "
        "'fastp2p[triton]')")


def test_info_lists_cuda_when_a_gpu_is_visible(monkeypatch, capsys):
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(fastp2p.ops, "backend_name_for",
                        lambda device: "triton" if device.type == "cuda" else "cpp")
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: False)
    assert info.run(None) == 0
    out = capsys.readouterr().out
    assert "  cpu   cpp: the CPU kernels of fastp2p._C" in out
    assert "  cuda  triton: the Triton kernels" in out


@pytest.mark.parametrize("openmp, cpu", [(True, "CPU kernels (OpenMP)"),
                                         (False, "CPU kernels (no OpenMP: one thread)")],
                         ids=["openmp", "no-openmp"])
def test_info_says_whether_the_cpu_kernels_were_built_with_openmp(monkeypatch, capsys, openmp,
                                                                  cpu):
    """fastp2p._C's with_openmp flag, beside its with_cuda: built without -fopenmp, every CPU
    kernel runs on one thread whatever the thread settings say."""
    reason = cpp_backend.unavailable_reason()
    if reason:
        pytest.skip(reason)
    from fastp2p import _C
    monkeypatch.setattr(_C, "with_openmp", openmp)
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: False)
    monkeypatch.setattr(cpp_backend, "cuda_unavailable_reason", lambda: "no nvcc")
    assert info.run(None) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("C++ "))
    assert line == f"C++     fastp2p._C with {cpu}; no CUDA kernels (no nvcc)"
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: True)
    assert info._extension_status() == f"fastp2p._C with {cpu} and CUDA kernels"


def test_forced_backend_is_named(monkeypatch):
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    assert info._backend_line(torch.device("cpu")) == (
        "reference: forced by FASTP2P_BACKEND=reference")


def test_mismatched_checkpoint_error_leads_with_the_diagnosis_and_the_hint():
    saved = fastp2p.UNet(3, 3, 5, ngf=8).state_dict()
    with pytest.raises(ValueError) as error:
        fastp2p.UNet(3, 3, 5, ngf=4).load_state_dict(saved)
    first_line, details = str(error.value).split("\n", 1)
    assert first_line.startswith("checkpoint does not fit UNet(")
    assert "the file looks like UNet(" in first_line and "ngf=8" in first_line
    assert "UNet.from_checkpoint(path)" in first_line
    assert len(first_line) < 300
    assert details.startswith("details: ") and "shape mismatch" in details


def test_info_says_how_cpu_inference_runs_its_convolutions(monkeypatch, capsys, tmp_path):
    from fastp2p.ops import onednn_packed
    monkeypatch.delenv("FASTP2P_CPU_DECONV", raising=False)
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    assert info.run(None) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    if onednn_packed.available():
        assert line.endswith("oneDNN with weights packed once per input size (up to 4 a "
                             "layer); transposed convolutions: "
                             "oneDNN's deconvolution, four phases as one convolution, or GEMM "
                             "+ col2im, measured per layer on the first call and remembered in "
                             f"{tmp_path / 'cpu_deconv_forms.json'}")
        monkeypatch.setenv("FASTP2P_CPU_DECONV", "measure")
        assert info._cpu_inference_line().endswith(
            "on the first call (not remembered: FASTP2P_CPU_DECONV=measure)")
    monkeypatch.setenv("FASTP2P_CPU_DECONV", "gemm")
    with onednn_packed.packing_disabled():
        assert "reordered on every call" in info._cpu_inference_line()
    if onednn_packed.available():
        assert info._cpu_inference_line().endswith("gemm, as FASTP2P_CPU_DECONV says")


def test_info_reports_a_cpu_deconv_setting_the_ops_refuse(monkeypatch, tmp_path):
    """FASTP2P_CPU_DECONV=bogus: info said the forms were measured and remembered, while the
    first transposed convolution of `fastp2p test` refused the value; info now shows the
    op's own error, as it does for a FASTP2P_BACKEND the dispatcher refuses."""
    from fastp2p.ops import onednn_packed
    from fastp2p.ops.conv_transpose import cpu_inference_form
    if not onednn_packed.available():
        pytest.skip("without oneDNN's packed ops one form applies and the value is not read")
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    monkeypatch.setenv("FASTP2P_CPU_DECONV", "bogus")
    with pytest.raises(ValueError) as refused, torch.no_grad():
        cpu_inference_form(torch.nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
                           torch.zeros(2, 16, 8, 8))
    assert info._convolutions_line() == f"convolution settings: error: {refused.value}"
    assert str(refused.value).startswith("FASTP2P_CPU_DECONV='bogus': expected one of gemm")
    assert not any(tmp_path.iterdir())  # nothing was measured or remembered


def test_info_reports_a_conv_setting_the_ops_refuse(monkeypatch):
    from fastp2p.ops.backends import conv_choice
    monkeypatch.setenv("FASTP2P_CONV", "bogus")
    with pytest.raises(ValueError) as refused:
        conv_choice.forced()
    assert info._convolutions_line() == f"convolution settings: error: {refused.value}"


def test_info_prints_a_refused_conv_setting_under_no_cpu_inference_label(monkeypatch, capsys):
    """FASTP2P_CONV chooses the convolutions of training and of every device: `fastp2p info`
    printed its refusal under "CPU float32 inference convolutions", as if only that read it."""
    monkeypatch.setenv("FASTP2P_CONV", "bogus")
    assert info.run(None) == 0
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert last_line == ("convolution settings: error: FASTP2P_CONV must be one of ('fused', "
                         "'module') or unset, got 'bogus'")


def test_info_says_whether_fused_convolutions_can_run_on_the_cpu(monkeypatch):
    """FASTP2P_CONV=fused: info said "oneDNN with weights packed once" (today's forward, which
    that setting replaces), and `fastp2p test` then failed on a CPU without the Triton
    interpreter; info asks the conv choice the question a network's forward asks."""
    from fastp2p.ops.backends import conv_choice
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    if conv_choice.conv_fused_backend(torch.device("cpu")) is not None:  # TRITON_INTERPRET=1
        assert info._cpu_inference_line() == (
            "the fused convolution (Triton kernels through the interpreter; slow), as "
            "FASTP2P_CONV=fused says")
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: None)
    assert info._convolutions_line().startswith(
        "convolution settings: error: FASTP2P_CONV=fused, but the fused convolution cannot run "
        "this layer (input torch.float32, weight torch.float32 on cpu")
