"""`fastp2p pack --verify` on an OS error says what its errno needs (``read_error_advice``):
a shard it could not read was "cannot read it (strerror)" with no advice, and OUT it could not
list said "make it readable" whatever the errno (an EIO, a removed folder). The errors are
injected in-process; a real permission denial is test_pack_verify_problems.py's."""
import errno
import os
import pathlib

import pytest

import fastp2p.data.packed_index as packed_index
from fastp2p.cli import main
from helpers.data_helpers import make_aligned, tiny_pack_args

READABLE = "make it readable by this user (its permissions, or its folders')"
DEVICE = ("the disk or file server failed to read it; check that device (the kernel log, "
          "`dmesg`) or server")


@pytest.fixture
def out(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2)
    assert main(tiny_pack_args(data, out)) == 0
    return out


def _verify(out, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["pack", "--verify", str(out), "--no-progress"])
    return code, capsys.readouterr().err


def _shard_fails(monkeypatch, number: int):
    """Reading shard-00000.u8's bytes fails with ``number`` (as file_checksums's open or
    read would); the other shard reads as it is."""
    checksums = packed_index.file_checksums

    def fail(path):
        if path.name == "shard-00000.u8":
            raise OSError(number, os.strerror(number), str(path))
        return checksums(path)
    monkeypatch.setattr(packed_index, "file_checksums", fail)


@pytest.mark.parametrize("number, then", [
    (errno.EACCES, f"; {READABLE}, then check it again"),
    (errno.EPERM, f"; {READABLE}, then check it again"),
    (errno.EIO, f"; {DEVICE}, then check it again"),
    (errno.ENXIO, ""),      # no known cause: its strerror alone
], ids=["EACCES", "EPERM", "EIO", "ENXIO"])
def test_a_shard_it_cannot_read_says_what_its_errno_needs(out, capsys, monkeypatch, number,
                                                         then):
    _shard_fails(monkeypatch, number)
    code, err = _verify(out, capsys)
    shard = out / "train" / "shard-00000.u8"
    assert code == 1
    assert err == f"fastp2p pack: error: {shard}: cannot read it ({os.strerror(number)}){then}\n"


def test_a_shard_removed_while_checked_can_be_restored_or_packed_again(out, capsys,
                                                                       monkeypatch):
    _shard_fails(monkeypatch, errno.ENOENT)
    code, err = _verify(out, capsys)
    shard = out / "train" / "shard-00000.u8"
    assert code == 1
    assert err.startswith(f"fastp2p pack: error: {shard}: cannot read it (No such file or "
                          "directory); it was removed or renamed since it was found; restore "
                          "it, or re-run `fastp2p pack ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("number, then", [
    (errno.EPERM, f"; {READABLE}"),
    (errno.EIO, f"; {DEVICE}"),
    (errno.ENOENT, "; it was removed or renamed since it was found; restore it"),
    (errno.ENXIO, ""),
], ids=["EPERM", "EIO", "ENOENT", "ENXIO"])
def test_an_out_folder_it_cannot_list_says_what_its_errno_needs(out, capsys, monkeypatch,
                                                               number, then):
    """Only a permission is made readable: an EIO said 'make it readable'."""
    listed = pathlib.Path.iterdir

    def iterdir(path):
        if path == out:
            raise OSError(number, os.strerror(number), str(path))
        return listed(path)
    monkeypatch.setattr(pathlib.Path, "iterdir", iterdir)
    code, err = _verify(out, capsys)
    assert code == 1
    assert err == (f"fastp2p pack: error: {out}: cannot list this folder "
                   f"({os.strerror(number)}){then}\n")
