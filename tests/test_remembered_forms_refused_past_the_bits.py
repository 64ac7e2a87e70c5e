"""A write of the forms that a folder's permission bits allow but something else refuses (an
immutable file, an ACL, a security module: simulated here) was said with the bare "Permission
denied" and "ask its owner to remove it", naming the forms file even where the temporary file
beside it was the one refused. The line names the file refused, what was being done to it, and
the folder's state."""
import errno
import os
from pathlib import Path

import pytest

from fastp2p.ops import remembered_forms
from fastp2p.ops.remembered_forms import RememberedForms

NOT_REMEMBERED = (": something other than the permission bits refuses it (an immutable "
                  "attribute, an ACL, a security module such as SELinux), so the CPU transposed "
                  "convolutions' forms measured here are not remembered (each process measures "
                  "them again); lift that, or set FASTP2P_CACHE to a folder of your own\n")


@pytest.fixture
def forms_file(tmp_path, monkeypatch):
    """The forms file of a cache folder of this user's, without the sticky bit."""
    monkeypatch.setenv("FASTP2P_CACHE", str(tmp_path / "cache"))
    RememberedForms().put(("a layer",), "gemm")
    return remembered_forms.path()


def _refuse(monkeypatch, name: str, refusal: PermissionError) -> None:
    """``remembered_forms.NAME`` raising ``refusal``."""
    def refused(*args, **kwargs):
        raise refusal
    monkeypatch.setattr(remembered_forms, name, refused)


def _said_by_a_put(capsys) -> str:
    capsys.readouterr()
    RememberedForms().put(("another layer",), "onednn")
    return capsys.readouterr().err


def _temporary(file: Path) -> Path:
    return file.with_name(f".{file.name}.tmp-{os.getpid()}{file.suffix}")


def _said_of_a_refused_rename(forms_file, monkeypatch, capsys, folder_said: str) -> tuple:
    """(what a put says where the rename of its temporary file onto ``forms_file`` is
    refused (EPERM), what it should say: the rename's line, ``folder_said`` of the folder)."""
    temporary = _temporary(forms_file)
    _refuse(monkeypatch, "replace_text", PermissionError(
        errno.EPERM, os.strerror(errno.EPERM), str(temporary), None, str(forms_file)))
    return _said_by_a_put(capsys), (
        f"fastp2p: {forms_file}: Operation not permitted replacing it with {temporary.name}, "
        f"though {forms_file.parent} lets you write in it and {folder_said}" + NOT_REMEMBERED)


def test_a_refused_rename_names_the_file_it_would_replace(forms_file, monkeypatch, capsys):
    said, expected = _said_of_a_refused_rename(forms_file, monkeypatch, capsys,
                                               "has no sticky bit")
    assert said == expected


@pytest.mark.parametrize("owner", [
    "yours", pytest.param("another user's", marks=pytest.mark.skipif(
        os.geteuid() != 0, reason="giving a file to another user needs root"))])
def test_a_refused_rename_in_your_own_sticky_folder_is_past_the_bits(forms_file, monkeypatch,
                                                                     capsys, owner):
    """The sticky bit keeps another user's file from you only in a folder not your own: in
    yours (a shared FASTP2P_CACHE you made, mode 1777) you may replace any file, so its
    refusal is something else's, not the file's owner's to lift."""
    forms_file.parent.chmod(0o1777)
    if owner != "yours":
        os.chown(forms_file, 65534, 65534)   # nobody's
    said, expected = _said_of_a_refused_rename(
        forms_file, monkeypatch, capsys, "its sticky bit does not keep this file from you")
    assert said == expected


def test_a_refused_temporary_file_is_named_as_such(forms_file, monkeypatch, capsys):
    """atomic_files.TemporaryFile names the file it was to replace in its creation's error:
    that file was not the one refused."""
    _refuse(monkeypatch, "replace_text", PermissionError(
        errno.EACCES, os.strerror(errno.EACCES), str(forms_file)))
    assert _said_by_a_put(capsys) == (
        f"fastp2p: {_temporary(forms_file)}: Permission denied making it, to replace "
        f"{forms_file.name} with it, though {forms_file.parent} lets you write in it and has no "
        "sticky bit" + NOT_REMEMBERED)


def test_a_refused_lock_file_is_named(forms_file, monkeypatch, capsys):
    lock = forms_file.with_name(f".{forms_file.name}.lock")
    _refuse(monkeypatch, "open_plain_file", PermissionError(
        errno.EACCES, os.strerror(errno.EACCES), str(lock)))
    assert _said_by_a_put(capsys) == (
        f"fastp2p: {lock}: Permission denied opening it, though {forms_file.parent} lets you "
        "write in it and has no sticky bit" + NOT_REMEMBERED)
