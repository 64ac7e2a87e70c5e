"""Which part of the measured-forms file (fastp2p.ops.remembered_forms) a process reads:

- only a file of this format: a file of another format reads as empty, even where it holds
  a section named like this machine's;
- the file where the cache folder is now: when FASTP2P_CACHE moves, the new folder's file is
  read (a RememberedForms reads once per path, not once per process);
- only the section of this CPU, torch build and fastp2p version: choices written under another
  torch version are not used (they were timed against other kernels), and are kept in the file.
"""
import json

import pytest
import torch

from fastp2p.ops import remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms

KEY = ("layer", (1, 8, 4, 4), 2)


@pytest.fixture
def fresh_machine(monkeypatch):
    """machine() computed afresh in the test (it is cached per process), and after it."""
    remembered_forms.machine.cache_clear()
    yield
    remembered_forms.machine.cache_clear()


def _write(folder, content):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / remembered_forms.FILE_NAME).write_text(json.dumps(content))


@pytest.mark.parametrize("file_format", [remembered_forms._FORMAT + 1, 1, None, "2"])
def test_a_file_of_another_format_reads_as_empty(monkeypatch, tmp_path, file_format):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    content = {"machines": {remembered_forms.machine(): {repr(KEY): "gemm"}}}
    if file_format is not None:
        content["format"] = file_format
    _write(tmp_path, content)
    assert RememberedForms().get(KEY) is None
    _write(tmp_path, dict(content, format=remembered_forms._FORMAT))
    assert RememberedForms().get(KEY) == "gemm"   # the same sections in this format are read


def test_the_file_is_read_again_when_the_cache_folder_moves(monkeypatch, tmp_path):
    forms = RememberedForms()
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "first"))
    assert forms.get(KEY) is None   # no file there yet
    for folder, form in (("second", "gemm"), ("third", "onednn")):
        _write(tmp_path / folder, {"format": remembered_forms._FORMAT,
                                   "machines": {remembered_forms.machine(): {repr(KEY): form}}})
        monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / folder))
        assert forms.get(KEY) == form
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "first"))
    assert forms.get(KEY) is None


def test_a_section_written_under_another_torch_version_is_not_used(monkeypatch, tmp_path,
                                                                   fresh_machine):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    this_torch = torch.__version__
    monkeypatch.setattr(torch, "__version__", this_torch + "+another")
    remembered_forms.machine.cache_clear()
    other_section = remembered_forms.machine()
    RememberedForms().put(KEY, "gemm")
    assert RememberedForms().get(KEY) == "gemm"   # read back under that torch version

    monkeypatch.setattr(torch, "__version__", this_torch)
    remembered_forms.machine.cache_clear()
    assert remembered_forms.machine() != other_section
    assert RememberedForms().get(KEY) is None
    RememberedForms().put(KEY, "onednn")
    sections = json.loads(remembered_forms.path().read_text())["machines"]
    assert sections[other_section] == {repr(KEY): "gemm"}
    assert sections[remembered_forms.machine()] == {repr(KEY): "onednn"}
