"""fastp2p's build fingerprint (fastp2p.build_fingerprint): the version number stays the same from
commit to commit (QA: "fastp2p 0.1.0" from builds ~450 commits apart), so `--version`, `info`
and the key of the remembered CPU forms (fastp2p.ops.remembered_forms) could not tell builds
apart, and one build's measured forms were taken by another."""
import importlib.util
import json
import os
from types import SimpleNamespace
import subprocess
import sys

import pytest

from fastp2p import build_fingerprint as fingerprints
from fastp2p.ops import remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms

KEY = ("layer", (1, 8, 4, 4), 2)


@pytest.fixture
def fresh_fingerprint():
    """The fingerprint and machine() computed afresh in the test (each is cached per process),
    and after it."""
    cached = (fingerprints.build_fingerprint, remembered_forms.machine)   # before a test's
    for function in cached:                                               # stand-ins
        function.cache_clear()
    yield
    for function in cached:
        function.cache_clear()


def test_forms_measured_under_another_build_are_measured_afresh(monkeypatch, tmp_path,
                                                                fresh_fingerprint):
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    this_build = fingerprints.build_fingerprint()
    monkeypatch.setattr(fingerprints, "build_fingerprint", lambda: "0123456789ab")
    remembered_forms.machine.cache_clear()
    other_section = remembered_forms.machine()
    RememberedForms().put(KEY, "gemm")

    monkeypatch.setattr(fingerprints, "build_fingerprint", lambda: this_build)
    remembered_forms.machine.cache_clear()
    assert remembered_forms.machine() != other_section
    assert RememberedForms().get(KEY) is None   # not the other build's: measured again
    sections = json.loads(remembered_forms.path().read_text())["machines"]
    assert sections[other_section] == {repr(KEY): "gemm"}   # kept for that build


def test_a_builds_write_drops_the_same_machines_other_builds(monkeypatch, tmp_path,
                                                             fresh_fingerprint):
    """An editable install is a new build at every edit: the file kept a section of each, read
    and written whole at every first call."""
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path))
    other_machine = "Another CPU | torch 0.0 | fastp2p 0.1.0 (build 000000000000)"
    remembered_forms.path().write_text(json.dumps({"format": remembered_forms._FORMAT,
                                                   "machines": {other_machine: {"k": "gemm"}}}))
    for build, form in (("0123456789ab", "gemm"), ("ba9876543210", "phases")):
        monkeypatch.setattr(fingerprints, "build_fingerprint", lambda build=build: build)
        remembered_forms.machine.cache_clear()
        RememberedForms().put(KEY, form)
    sections = json.loads(remembered_forms.path().read_text())["machines"]
    assert sections == {other_machine: {"k": "gemm"},
                        remembered_forms.machine(): {repr(KEY): "phases"}}


def test_a_file_name_that_is_not_utf8_is_hashed_not_raised(monkeypatch, tmp_path,
                                                           fresh_fingerprint):
    """The fingerprint is part of the CPU forms' key, made in a network's forward: a name Python
    reads as a lone surrogate raised UnicodeEncodeError out of every CPU inference forward."""
    module = tmp_path / "adam.py"
    module.write_text("STEP = 1\n")
    monkeypatch.setattr(fingerprints, "_package_files",
                        lambda: {"fastp2p/\udcff.py": module})
    fingerprint = fingerprints.build_fingerprint()
    assert len(fingerprint) == 12 and int(fingerprint, 16) >= 0


def test_a_changed_package_file_changes_the_fingerprint(monkeypatch, tmp_path,
                                                        fresh_fingerprint):
    module = tmp_path / "adam.py"
    module.write_text("STEP = 1\n")
    monkeypatch.setattr(fingerprints, "_package_files", lambda: {"fastp2p/adam.py": module})
    first = fingerprints.build_fingerprint()
    fingerprints.build_fingerprint.cache_clear()
    assert fingerprints.build_fingerprint() == first   # the same files: the same build
    module.write_text("STEP = 2\n")
    fingerprints.build_fingerprint.cache_clear()
    assert fingerprints.build_fingerprint() != first
    assert len(first) == 12 and int(first, 16) >= 0


def test_the_package_files_are_its_modules_and_extension():
    names = fingerprints._package_files()
    assert {"fastp2p/__init__.py", "fastp2p/ops/remembered_forms.py",
            "fastp2p/kernels/__init__.py"} <= set(names)
    assert not any("__pycache__" in name for name in names)
    # the compiled extension, where this install has one
    assert (any(name.startswith("fastp2p/_C.") for name in names)
            or importlib.util.find_spec("fastp2p._C") is None)


@pytest.mark.parametrize("argv", [["--version"], ["info"]])
def test_version_and_info_name_the_build(tmp_path, argv):
    out = subprocess.run([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == fingerprints.version_line(), out
    assert f"(build {fingerprints.build_fingerprint()})" in out


def _fingerprint_of(monkeypatch, files: dict) -> str:
    """build_fingerprint() of ``files`` ({name as installed: path}, in that order), afresh."""
    monkeypatch.setattr(fingerprints, "_package_files", lambda: dict(files))
    fingerprints.build_fingerprint.cache_clear()
    return fingerprints.build_fingerprint()


def test_the_files_are_hashed_by_name_in_name_order(monkeypatch, tmp_path, fresh_fingerprint):
    """Hashed in name order: an editable install and a wheel's list their files in other
    orders (rglob follows the file system), yet are one build; and with their names: a module
    renamed is another build, though no byte in it changed."""
    first, second = tmp_path / "a.py", tmp_path / "b.py"
    first.write_bytes(os.urandom(64))
    second.write_bytes(os.urandom(64))
    one = _fingerprint_of(monkeypatch, {"fastp2p/a.py": first, "fastp2p/b.py": second})
    assert _fingerprint_of(monkeypatch, {"fastp2p/b.py": second, "fastp2p/a.py": first}) == one
    assert _fingerprint_of(monkeypatch, {"fastp2p/a.py": first,
                                         "fastp2p/c.py": second}) != one


def test_a_file_that_cannot_be_read_makes_the_fingerprint_unknown(monkeypatch, tmp_path,
                                                                  fresh_fingerprint):
    """Never raises (a network's forward makes the CPU forms' key with it): a file removed
    or unreadable since it was listed gives "unknown"."""
    assert _fingerprint_of(monkeypatch, {"fastp2p/gone.py": tmp_path / "gone.py"}) == "unknown"


def test_the_package_files_are_named_as_installed_with_their_data_files(monkeypatch, tmp_path):
    """fastp2p's modules, data files (its .json choice tables) and fastp2p.kernels' modules,
    each named as installed (kernels/ beside fastp2p in a source tree is fastp2p/kernels);
    nothing under __pycache__ and no other kind of file."""
    folders = {"fastp2p": tmp_path / "fastp2p", "fastp2p.kernels": tmp_path / "kernels"}
    for name in ("fastp2p/ops/adam.py", "fastp2p/ops/conv_choice.json", "fastp2p/notes.txt",
                 "fastp2p/__pycache__/adam.py", "kernels/norm_act.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(os.urandom(16))
    monkeypatch.setattr(fingerprints, "find_spec", lambda package: SimpleNamespace(
        submodule_search_locations=[str(folders[package])]))
    assert sorted(fingerprints._package_files()) == [
        "fastp2p/kernels/norm_act.py", "fastp2p/ops/adam.py", "fastp2p/ops/conv_choice.json"]
