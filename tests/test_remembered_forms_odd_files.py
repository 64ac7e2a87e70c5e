"""Odd remembered-forms files and cache folders mean timing the forms again, never an error
(fastp2p.ops.remembered_forms): JSON nested deeper than the parser's recursion limit, bytes that
are not UTF-8, a folder in the file's place, and no cache folder at all (no FASTP2P_CACHE, no
home folder: a container whose user has no passwd entry). The default dataset says what to
set instead."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.cache_folder import NoCacheFolder, cache_root
from fastp2p.data.default_dataset import default_dataroot
from fastp2p.data.errors import DataError
from fastp2p.ops import conv_transpose, remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms
from helpers.cpp_backend_helpers import requires_extension

pytestmark = requires_extension


@pytest.fixture
def timed(monkeypatch, tmp_path):
    """The forms timed (fake timings: onednn fastest), as a fresh process, remembering under
    tmp_path/cache."""
    forms = []

    def fake(form, run):
        forms.append(form)
        return {"gemm": 3e-3, "onednn": 1e-3, "phases": 2e-3}[form]

    monkeypatch.setattr(conv_transpose, "_timed", fake)
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(conv_transpose.FORM_ENV_VAR, raising=False)
    monkeypatch.setenv("FASTP2P_BACKEND", "cpp")
    monkeypatch.setattr(conv_transpose, "_measured_forms", {})
    monkeypatch.setattr(conv_transpose, "_remembered_forms", RememberedForms())
    return forms


def _choose():
    with torch.no_grad():
        return conv_transpose.cpu_inference_form(nn.ConvTranspose2d(8, 4, 4, 2, 1),
                                                 torch.randn(1, 8, 4, 4))


def _without_home(monkeypatch):
    monkeypatch.delenv("FASTP2P_CACHE", raising=False)
    monkeypatch.delenv("HOME", raising=False)

    def no_home(cls=None):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", classmethod(no_home))


@pytest.mark.parametrize("content", ["[" * 5000, b"\xff\xfe not utf-8", "A FOLDER"])
def test_an_odd_file_means_timing_again(timed, content):
    file = remembered_forms.path()
    file.parent.mkdir(parents=True)
    if content == "A FOLDER":
        file.mkdir()
    elif isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content)
    assert _choose() == "onednn" and timed
    if content != "A FOLDER":  # rewritten with the new choice
        sections = json.loads(file.read_text())["machines"]
        assert list(sections[remembered_forms.machine()].values()) == ["onednn"]


@pytest.mark.parametrize("section", [5, [1], "ab"])
def test_a_machine_section_of_another_shape_means_timing_again(timed, section):
    """A file of this format whose section for this machine is no object (edited by hand):
    reading it as one raised in the first U-Net forward."""
    file = remembered_forms.path()
    file.parent.mkdir(parents=True)
    file.write_text(json.dumps({"format": remembered_forms._FORMAT,
                                "machines": {remembered_forms.machine(): section}}))
    assert _choose() == "onednn" and timed


def test_no_cache_folder_means_timing_again(timed, monkeypatch):
    _without_home(monkeypatch)
    with pytest.raises(NoCacheFolder, match="set FASTP2P_CACHE"):
        cache_root()
    assert _choose() == "onednn" and timed
    timed.clear()
    assert _choose() == "onednn" and not timed  # this process's choice stays


def test_a_unet_runs_without_a_cache_folder(timed, monkeypatch):
    _without_home(monkeypatch)
    net = fastp2p.UNet(3, 3, 5, ngf=8).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_a_unet_runs_with_a_file_nested_too_deep(timed):
    remembered_forms.path().parent.mkdir(parents=True)
    remembered_forms.path().write_text("[" * 5000)
    net = fastp2p.UNet(3, 3, 5, ngf=8).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_the_default_dataset_without_a_cache_folder_says_what_to_set(monkeypatch):
    _without_home(monkeypatch)
    with pytest.raises(DataError, match="set FASTP2P_CACHE to a writable folder, or pass "
                                        "--dataroot"):
        default_dataroot()
