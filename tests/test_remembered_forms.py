"""The CPU transposed convolutions' measured forms are remembered between processes
(fastp2p.ops.remembered_forms): a later process on the same machine and software takes the
file's choice instead of timing the forms again; anything wrong with the file means timing
again, never an error; FASTP2P_CPU_DECONV=measure neither reads nor writes it."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from fastp2p.ops import conv_transpose, remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms
from helpers.cpp_backend_helpers import requires_extension

pytestmark = requires_extension

SECONDS = {"gemm": 3e-3, "onednn": 1e-3, "phases": 2e-3}


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """The forms timed (fake timings: onednn fastest); a fresh process's state, remembering
    under tmp_path/cache."""
    forms = []

    def fake(form, run):
        run()
        forms.append(form)
        return SECONDS[form]

    monkeypatch.setattr(conv_transpose, "_timed", fake)
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(conv_transpose.FORM_ENV_VAR, raising=False)
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    new_process(monkeypatch)
    return forms


def new_process(monkeypatch):
    """Forget what this process measured and read, as a new process would."""
    monkeypatch.setattr(conv_transpose, "_measured_forms", {})
    monkeypatch.setattr(conv_transpose, "_remembered_forms", RememberedForms())


def _choose(module=None):
    """The form chosen for ``module`` (default: the layer ``_key`` describes) on a 1x8x4x4 input."""
    module = module or nn.ConvTranspose2d(8, 4, 4, 2, 1)
    with torch.no_grad():
        return conv_transpose.cpu_inference_form(module, torch.randn(1, 8, 4, 4))


def _key():
    """The file's key for ``_choose()``'s default layer and input, all three forms applying."""
    return repr(conv_transpose._choice_key(nn.ConvTranspose2d(8, 4, 4, 2, 1),
                                           torch.randn(1, 8, 4, 4), list(conv_transpose.CPU_FORMS)))


def _sections():
    return json.loads(remembered_forms.path().read_text())["machines"]


def test_a_later_process_takes_the_remembered_choice_without_timing(timed, monkeypatch):
    assert _choose() == "onednn" and timed
    assert list(_sections()) == [remembered_forms.machine()]
    assert list(_sections()[remembered_forms.machine()].values()) == ["onednn"]
    timed.clear()
    new_process(monkeypatch)
    seconds_now = {"gemm": 1e-4}  # would win if timed again
    monkeypatch.setattr(conv_transpose, "_timed", lambda form, run: seconds_now.get(form, 1.0))
    assert _choose() == "onednn"
    # Another thread count is another choice: timed, and kept beside the first.
    torch_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(torch_threads + 1)
        assert _choose() == "gemm"
    finally:
        torch.set_num_threads(torch_threads)
    assert sorted(_sections()[remembered_forms.machine()].values()) == ["gemm", "onednn"]


def test_another_machines_section_is_kept_and_not_used(timed, monkeypatch):
    remembered_forms.path().parent.mkdir(parents=True)
    key = _key()
    other = {"format": remembered_forms._FORMAT,
             "machines": {"another CPU | torch 0 | fastp2p 0": {key: "gemm"}}}
    remembered_forms.path().write_text(json.dumps(other))
    assert _choose() == "onednn" and timed
    assert _sections()["another CPU | torch 0 | fastp2p 0"] == {key: "gemm"}


@pytest.mark.parametrize("content", [
    "{not json", json.dumps([1, 2]), json.dumps({"format": 99, "machines": {}}),
    "FORM_NOT_APPLYING"])
def test_a_file_that_is_unusable_means_timing_again(timed, monkeypatch, content):
    remembered_forms.path().parent.mkdir(parents=True)
    if content == "FORM_NOT_APPLYING":  # an entry naming a form this layer cannot run
        content = json.dumps({"format": remembered_forms._FORMAT,
                              "machines": {remembered_forms.machine(): {_key(): "fft"}}})
    remembered_forms.path().write_text(content)
    assert _choose() == "onednn" and timed
    assert list(_sections()[remembered_forms.machine()].values()) == ["onednn"]


def test_a_cache_folder_that_cannot_be_written_means_timing_again(timed, monkeypatch, tmp_path):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("")
    monkeypatch.setenv("FASTP2P_CACHE", str(blocker / "cache"))
    assert _choose() == "onednn" and timed
    timed.clear()
    new_process(monkeypatch)
    assert _choose() == "onednn" and timed


def test_another_processes_entries_written_meanwhile_are_kept(timed, monkeypatch):
    assert _choose() == "onednn"
    elsewhere = RememberedForms()  # another process, which measured another layer meanwhile
    elsewhere.put(("another layer",), "phases")
    assert _choose(nn.ConvTranspose2d(8, 6, 4, 2, 1)) == "onednn"
    assert sorted(_sections()[remembered_forms.machine()].values()) == ["onednn", "onednn",
                                                                        "phases"]


def test_measure_neither_reads_nor_writes_the_file(timed, monkeypatch):
    monkeypatch.setenv(conv_transpose.FORM_ENV_VAR, "measure")
    assert _choose() == "onednn" and timed
    assert not remembered_forms.path().exists()


def test_a_second_process_runs_a_unet_without_timing_a_form(tmp_path):
    """End to end, in two real processes: the second one's forms all come from the file (its
    timing would raise)."""
    script = textwrap.dedent("""
        import sys, torch, fastp2p
        from fastp2p.ops import conv_transpose
        if sys.argv[1] == "second":
            def refuse(*args):
                raise AssertionError("timed a form the first process measured")
            conv_transpose._faster_form = refuse
        torch.manual_seed(0)
        net = fastp2p.UNet(3, 3, 5, ngf=4, norm="batch").eval()
        with torch.no_grad():
            print(net(torch.rand(1, 3, 32, 32)).sum().item())
        """)
    env = {**os.environ, "FASTP2P_CACHE": str(tmp_path), "FASTP2P_CPU_DECONV": ""}
    env.pop("FASTP2P_BACKEND", None)
    outputs = []
    for which in ("first", "second"):
        # cwd: not the checkout, whose fastp2p/ source folder would shadow the installed package
        run = subprocess.run([sys.executable, "-c", script, which], env=env, cwd=tmp_path,
                             capture_output=True, text=True)
        assert run.returncode == 0, f"{which} process: {run.stderr[-2000:]}"
        outputs.append(run.stdout)
    assert (tmp_path / "cpu_deconv_forms.json").exists()
    assert float(outputs[0]) == pytest.approx(float(outputs[1]), rel=1e-5)
