"""What PackedDataset says of an OS error opening or reading a shard, by its errno (review r42):
every one was "make it readable" (open) or "check the disk" (read), wrong for a shard removed,
a stale NFS handle, or an errno that says nothing more."""
import errno
import os

import pytest

import fastp2p.data.packed as packed_module
from fastp2p.cli import main
from fastp2p.data import DataError
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import make_aligned, tiny_pack_args

PAIRS = 4   # 2 shards of 2
AGAIN = "start the training again (`--continue_train` resumes it from its last checkpoint)"
# what each errno class is said to need, before AGAIN (none for an errno with no advice)
ADVICE = {
    errno.EACCES: "make it readable by this user (its permissions, or its folders'), then ",
    errno.EIO: ("the disk or file server failed to read it; check that device (the kernel log, "
                "`dmesg`) or server, then "),
    errno.ENXIO: "",
}
STALE = ("this shard was replaced or removed on the file server while it was read (Stale file "
         "handle, NFS): the pack was rewritten on another machine; start the training again once "
         "that is done (`--continue_train` resumes it from its last checkpoint)")


@pytest.fixture
def phase(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=PAIRS)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "2")) == 0
    return out / "train"


def _open(phase):
    return PackedDataset(phase, Preprocess(load_size=16, crop_size=16), swap=False)


def _refuse_opening(monkeypatch, path, code: int):
    """os.open of ``path`` fails with ``code``; other files open."""
    real_open = os.open

    def refusing(name, *args, **kwargs):
        if os.fspath(name) == os.fspath(path):
            raise OSError(code, os.strerror(code), os.fspath(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ENXIO, errno.ESTALE],
                         ids=errno.errorcode.get)
def test_an_open_error_says_what_its_errno_needs(phase, monkeypatch, code):
    """Permission: make it readable; EIO: the device; ESTALE: replaced on the NFS server; any
    other errno: its words, and no advice that may be wrong (all were "make it readable")."""
    shard = phase / "shard-00000.u8"
    dataset = _open(phase)
    _refuse_opening(monkeypatch, shard, code)
    with pytest.raises(DataError) as error:
        dataset.read_raw(0)
    if code == errno.ESTALE:
        assert str(error.value) == f"{shard}: {STALE}"
    else:
        assert str(error.value) == (f"{shard}: cannot read this shard ({os.strerror(code)}); "
                                    f"{ADVICE[code]}{AGAIN}")


@pytest.mark.parametrize("checked", [False, True], ids=["unchecked", "checked"])
def test_a_shard_removed_before_its_open_is_missing_not_unreadable(phase, monkeypatch, checked):
    """ENOENT from the open (removed after its size was checked): a shard missing, to restore
    or repack; the pack rewritten when this process had checked it (as when the size check
    finds it gone). It was "make it readable"."""
    shard = phase / "shard-00000.u8"
    dataset = _open(phase)
    if checked:
        dataset.read_raw(0)
        info = os.stat(shard)   # its ctime moves: the next read opens it again
        os.utime(shard, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    _refuse_opening(monkeypatch, shard, errno.ENOENT)
    with pytest.raises(DataError) as error:
        dataset.read_raw(1)
    message = str(error.value)
    if checked:
        assert message.startswith(f"{phase}: the pack was rewritten while it was read "
                                  f"({shard.name} no longer matches"), message
    else:
        assert message.startswith(f"{shard}: shard missing (removed while the pack was read); "
                                  "restore it, or re-run `fastp2p pack "), message
    assert "\n" not in message


@pytest.mark.parametrize("read", ["read_raw", "read_batch"])
@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ENXIO, errno.ESTALE],
                         ids=errno.errorcode.get)
def test_a_read_error_says_what_its_errno_needs(phase, monkeypatch, code, read):
    """A positioned read of an open, checked shard: EACCES (NFS checks each read), EIO, ESTALE,
    another errno, each said as above (all were "check the disk or file system")."""
    dataset = _open(phase)
    dataset.read_batch(range(PAIRS))    # both shards open and checked

    def failing(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(packed_module, "_PREADV", failing)
    with pytest.raises(DataError) as error:
        dataset.read_raw(3) if read == "read_raw" else dataset.read_batch([0, 3])
    shard = phase / ("shard-00001.u8" if read == "read_raw" else "shard-00000.u8")
    if code == errno.ESTALE:
        assert str(error.value) == f"{shard}: {STALE}"
    else:
        assert str(error.value) == (f"{shard}: reading this shard failed "
                                    f"({os.strerror(code)}); {ADVICE[code]}{AGAIN}")
