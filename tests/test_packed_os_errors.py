"""What PackedDataset says of an OS error opening or reading a shard, by its errno (review r42):
every one was "make it readable" (open) or "check the disk" (read), wrong for a shard removed,
a stale NFS handle, or an errno that says nothing more. And a shard another process holds a
lease on (Samba, an NFS server) is waited for, as a plain open waits, not refused."""
import errno
import os
import subprocess
import sys

import pytest

import fastp2p.data.packed as packed_module
import fastp2p.file_reads as file_reads
from fastp2p.cli import main
from fastp2p.data import DataError
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
from fastp2p.file_reads import NotAFileToRead, open_to_read
from helpers.data_helpers import make_aligned, tiny_pack_args

PAIRS = 4   # 2 shards of 2
AGAIN = "start the training again (`--continue_train` resumes it from its last checkpoint)"
# what each errno class is said to need, before AGAIN (none for an errno with no advice)
ADVICE = {
    errno.EACCES: "make it readable by this user (its permissions, or its folders'), then ",
    errno.EIO: ("the disk or file server failed to read it; check that device (the kernel log, "
                "`dmesg`) or server, then "),
    errno.ENXIO: "",
    errno.EMFILE: ("raise this process's limit on open files (`ulimit -n`, shown by `ulimit -Hn`), "
                   "then "),
    errno.ENFILE: ("the system has as many files open as it allows; close other programs or raise "
                   "that limit (sysctl fs.file-max), then "),
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


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ENXIO, errno.ESTALE,
                                  errno.EMFILE, errno.ENFILE], ids=errno.errorcode.get)
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


_HOLDER = r"""
import fcntl, os, signal, sys, time
asked = []
signal.signal(signal.SIGIO, lambda *_: asked.append(True))
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
except OSError as error:
    print(f"refused: {error}", flush=True)
    sys.exit()
print("held", flush=True)
deadline = time.monotonic() + 20
while not asked and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.3)     # lets go a while after being asked: the open waits for it
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
print("asked" if asked else "never asked", flush=True)
"""


def _hold_a_lease(path):
    """A process holding a write lease on ``path`` until asked to let go (SIGIO), then 0.3 s
    more; skips the test where the lease is refused."""
    if not hasattr(__import__("fcntl"), "F_SETLEASE"):
        pytest.skip("no file leases (F_SETLEASE) on this system")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, os.fspath(path)],
                              stdout=subprocess.PIPE, text=True)
    first = holder.stdout.readline().strip()
    if first != "held":
        holder.wait(10)
        pytest.skip(f"F_SETLEASE not permitted here ({first or 'holder failed'})")
    return holder


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="the wait needs O_PATH (Linux)")
@pytest.mark.parametrize("reader", ["PackedDataset", "open_to_read"])
def test_a_leased_file_is_waited_for_not_refused(phase, reader):
    """A write lease held by another process: the non-blocking open fails with EWOULDBLOCK
    (the shard was "cannot read this shard (Resource temporarily unavailable); make it
    readable"). Opened again blocking, as a regular file, it reads once the holder lets go."""
    shard = phase / "shard-00000.u8"
    expected = _open(phase).read_raw(1) if reader == "PackedDataset" else shard.read_bytes()
    dataset = _open(phase)          # opens no shard yet: the lease may be taken
    holder = _hold_a_lease(shard)
    try:
        if reader == "PackedDataset":
            got = dataset.read_raw(1)
            assert (got == expected).all()
        else:
            with open_to_read(shard) as handle:
                assert handle.read() == expected
    finally:
        said, _ = holder.communicate(timeout=30)
    assert said.strip() == "asked"


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="reopens by O_PATH (Linux)")
def test_a_fifo_swapped_in_after_a_lease_refusal_is_refused_not_waited_on(tmp_path,
                                                                           monkeypatch):
    """The non-blocking open refused (a lease), then a FIFO at the name: it is opened without
    blocking again and refused by its fstat, not waited on."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_open = os.open
    calls = []

    def leased_once(name, flags, *args, **kwargs):
        calls.append(flags)
        if len(calls) == 1:
            raise BlockingIOError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK), name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", leased_once)
    with pytest.raises(NotAFileToRead):
        open_to_read(fifo)
    assert all(flags & os.O_NONBLOCK for flags in calls if not flags & os.O_PATH)


def test_a_lease_that_cannot_be_waited_for_says_so(phase, monkeypatch):
    """No O_PATH to reopen by (or no /proc): the EWOULDBLOCK, said as another process's lease
    (it was "make it readable")."""
    shard = phase / "shard-00000.u8"
    dataset = _open(phase)
    monkeypatch.setattr(file_reads, "_PATH_ONLY", 0, raising=False)
    _refuse_opening(monkeypatch, shard, errno.EWOULDBLOCK)
    with pytest.raises(DataError) as error:
        dataset.read_raw(0)
    assert str(error.value) == (f"{shard}: cannot read this shard "
                                f"({os.strerror(errno.EWOULDBLOCK)}); wait until another process "
                                "lets go of its lease on it (a Samba or NFS server sharing it), "
                                f"then {AGAIN}")


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="reopens by O_PATH (Linux)")
def test_a_lease_without_proc_to_reopen_by_raises_the_refusal(tmp_path, monkeypatch):
    """A regular file refused for a lease where /proc is not mounted: the EWOULDBLOCK is
    raised (as said above), and the O_PATH descriptor taken to check the file is closed."""
    path = tmp_path / "leased"
    path.write_bytes(b"data")
    real_open = os.open
    opened = []

    def without_proc(name, flags, *args, **kwargs):
        if str(name).startswith("/proc/self/fd/"):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if not opened and not flags & os.O_PATH:
            raise BlockingIOError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK), name)
        opened.append(real_open(name, flags, *args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(os, "open", without_proc)
    with pytest.raises(BlockingIOError):
        open_to_read(path)
    assert len(opened) == 1     # the O_PATH descriptor alone
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(opened[0])
