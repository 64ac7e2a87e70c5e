"""A shard changed in place under a PackedDataset that had already checked it (secqa r42, B2).

The dataset memory-mapped each shard and checked its CRC32 only when it first mapped it:
- a shard truncated in place afterwards (`: > shard`, or the `cp` of another pack over it, which
  keeps the inode) killed the process with SIGBUS at the next read of it, no message;
- a shard rewritten in place with other bytes of the same size was read on, the new pixels
  trained on, unreported (a pickled copy for a worker skipped the check as well).
Now each read compares the open shard's size and change times with those its check saw, and a
changed shard is checked again: the "pack rewritten" DataError, unless its bytes are still the
index's (a `touch`). Reads are positioned reads, which a truncation shortens, never SIGBUS.
"""
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

from fastp2p.cli import main
from fastp2p.data import DataError
from fastp2p.data.packed import PackedDataset
from fastp2p.data.transforms import Preprocess
from helpers.data_helpers import make_aligned, tiny_pack_args

PAIRS = 4   # two shards of two pairs, 16x32x3 each
REWRITTEN = "the pack was rewritten while it was read"


@pytest.fixture
def phase(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=PAIRS)
    assert main(tiny_pack_args(data, out, "--pairs-per-shard", "2")) == 0
    return out / "train"


def _open(phase):
    return PackedDataset(phase, Preprocess(load_size=16, crop_size=16), swap=False)


def _rewrite_in_place(path, data: bytes):
    """New bytes into the same inode (as `cp` does), with a later mtime for sure."""
    before = os.stat(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert os.stat(path).st_ino == before.st_ino


def _one_line_rewritten(error, phase, name):
    message = str(error.value)
    assert message.startswith(f"{phase}: {REWRITTEN} ({name} no longer matches"), message
    assert "--continue_train" in message and "\n" not in message


@pytest.mark.parametrize("size", ["empty", "half"])
def test_a_shard_truncated_in_place_is_reported_not_a_bus_error(phase, tmp_path, size):
    # in a child process: a SIGBUS there fails this test instead of killing pytest
    script = textwrap.dedent(f"""
        import os, sys
        from fastp2p.data import DataError
        from fastp2p.data.packed import PackedDataset
        from fastp2p.data.transforms import Preprocess
        dataset = PackedDataset({str(phase)!r}, Preprocess(load_size=16, crop_size=16), False)
        dataset.read_batch([0, 1, 2, 3])
        shard = os.path.join({str(phase)!r}, "shard-00001.u8")
        os.truncate(shard, {0 if size == "empty" else 16 * 32 * 3})  # same inode: pair 3 gone
        for read in (lambda: dataset.read_raw(3), lambda: dataset.read_batch([0, 3]),
                     lambda: dataset.read_raw(2)):
            try:
                read()
            except DataError as error:
                print("DataError:", error)
            else:
                print("read on")
        print(repr(dataset.read_raw(0)[0, 0]))  # the other shard still reads
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    for line in lines[:3]:
        assert line.startswith(f"DataError: {phase}: {REWRITTEN} (shard-00001.u8 "), line
    assert lines[3].startswith("array("), lines[3]


@pytest.mark.parametrize("first_read", ["read_raw", "read_batch"])
def test_a_shard_rewritten_in_place_with_other_bytes_is_reported(phase, first_read):
    dataset = _open(phase)
    first = dataset.read_batch(range(PAIRS)).clone()
    shard = phase / "shard-00000.u8"
    _rewrite_in_place(shard, bytes(255 - b for b in shard.read_bytes()))  # same size
    reads = [lambda: dataset.read_raw(1), lambda: dataset.read_batch([2, 0])]
    if first_read == "read_batch":
        reads.reverse()
    for read in reads:
        with pytest.raises(DataError) as error:
            read()
        _one_line_rewritten(error, phase, "shard-00000.u8")
    # the untouched shard reads on, its pixels unchanged
    assert torch.equal(dataset.read_batch([3]), first[3:])


def test_a_copy_for_a_worker_checks_a_shard_changed_since_the_parent_did(phase):
    dataset = _open(phase)
    dataset.read_raw(0)     # the parent checked shard 0
    shard = phase / "shard-00000.u8"
    _rewrite_in_place(shard, bytes(255 - b for b in shard.read_bytes()))
    worker = pickle.loads(pickle.dumps(dataset))
    with pytest.raises(DataError) as error:
        worker.read_raw(1)
    _one_line_rewritten(error, phase, "shard-00000.u8")
    worker.close()
    dataset.close()


def test_a_touched_shard_is_checked_again_and_read_on(phase, monkeypatch):
    import fastp2p.data.packed as packed_module
    dataset = _open(phase)
    first = dataset.read_batch(range(PAIRS)).clone()
    checked = []
    real_crc32 = packed_module.zlib.crc32
    monkeypatch.setattr(packed_module.zlib, "crc32",
                        lambda data, *rest: checked.append(len(data)) or real_crc32(data, *rest))
    shard = phase / "shard-00001.u8"
    _rewrite_in_place(shard, shard.read_bytes())    # same bytes, later mtime (a `touch`)
    assert torch.equal(dataset.read_batch(range(PAIRS)), first)
    assert np.array_equal(dataset.read_raw(3), first[3].numpy())
    assert checked == [shard.stat().st_size]        # shard 1 again, once; shard 0 not


def test_read_batch_into_a_strided_out_matches_read_raw(phase):
    dataset = _open(phase)
    storage = torch.zeros((PAIRS, 16, 32, 6), dtype=torch.uint8)
    out = storage[..., ::2]     # not contiguous: each pair is read whole, then placed
    assert dataset.read_batch([3, 0, 2], out=out[:3]) is not None
    for slot, index in enumerate([3, 0, 2]):
        assert np.array_equal(out[slot].numpy(), dataset.read_raw(index))
    assert not storage[..., 1::2].any()


def test_reader_threads_never_return_the_rewritten_pixels(phase):
    """Threads reading as PackedDeviceLoader's readers do while a shard is rewritten in place:
    each batch is the packed pixels or the rewritten error, never the new bytes."""
    dataset = _open(phase)
    first = dataset.read_batch(range(PAIRS)).clone()
    rewritten, outcomes = threading.Event(), []

    def reader():
        out = torch.empty_like(first)
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            if deadline is None and rewritten.is_set():
                deadline = time.monotonic() + 10
            try:
                dataset.read_batch(range(PAIRS), out=out)
            except DataError as error:
                outcomes.append(str(error) if rewritten.is_set() else f"early: {error}")
                return
            if not torch.equal(out, first):
                outcomes.append("new pixels read")
                return
        outcomes.append("read on after the rewrite")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    shard = phase / "shard-00000.u8"
    inverted = bytes(255 - b for b in shard.read_bytes())
    rewritten.set()     # from here on an error is expected
    _rewrite_in_place(shard, inverted)
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert outcome.startswith(f"{phase}: {REWRITTEN} (shard-00000.u8 "), outcome


@pytest.mark.parametrize("reads", ["pread", "short preadv"])
def test_pairs_read_the_same_through_pread_and_short_reads(phase, monkeypatch, reads):
    """Where os.preadv is missing the reads take os.pread (one more copy); a file system that
    returns fewer bytes than asked mid-file is read on, not taken for a truncated shard."""
    import fastp2p.data.packed as packed_module
    expected = _open(phase).read_batch(range(PAIRS))
    if reads == "pread":
        monkeypatch.setattr(packed_module, "_PREADV", None)
    else:
        real, pair_reads = os.preadv, []

        def short_preadv(fd, buffers, offset):
            # the first 100 bytes of the buffer whatever its shape (a pair's target is 3-D)
            got = real(fd, [buffers[0].reshape(-1)[:100]], offset)
            if buffers[0].nbytes == 16 * 32 * 3:
                pair_reads.append(got)
            return got

        monkeypatch.setattr(packed_module, "_PREADV", short_preadv)
    dataset = _open(phase)
    assert torch.equal(dataset.read_batch(range(PAIRS)), expected)
    shards = [("", 0), ("", 1)]
    opened = [dataset._files.get(key) for key in shards]
    assert np.array_equal(dataset.read_raw(2), expected[2].numpy())
    assert torch.equal(dataset.read_batch(range(PAIRS)), expected)
    # the short reads were resumed, not taken for a changed shard and opened again
    assert [dataset._files.get(key) for key in shards] == opened
    if reads == "short preadv":
        assert pair_reads[:PAIRS + 1] == [100] * (PAIRS + 1), pair_reads


def test_a_read_that_ends_early_at_an_unchanged_file_is_refused(phase, monkeypatch):
    """A file system that returns end of file inside a shard whose size and change times are
    those its CRC32 check saw (a read past what a network or FUSE mount delivers): the pair's
    buffer would be left unfilled, and it was handed out as a pair."""
    import fastp2p.data.packed as packed_module
    dataset = _open(phase)
    dataset.read_raw(0)     # the shard checked and open
    monkeypatch.setattr(packed_module, "_PREADV", lambda fd, buffers, offset: 0)
    for read in (lambda: dataset.read_raw(1), lambda: dataset.read_batch([1])):
        with pytest.raises(DataError) as error:
            read()
        _one_line_rewritten(error, phase, "shard-00000.u8")


def _touch(path):
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))


@pytest.mark.parametrize("second", ["during the check", "after the check"])
def test_a_second_metadata_change_during_the_recheck_reads_on(phase, monkeypatch, second):
    """touch, then chmod (chmod -R then chgrp -R, a backup tool's hard link): the shard's bytes
    never changed, so its pairs read on, checked again, not reported as the pack rewritten."""
    dataset = _open(phase)
    first = dataset.read_batch(range(PAIRS)).clone()
    shard = phase / "shard-00000.u8"
    armed = [True]

    def chmod_once():
        if armed[0]:
            armed[0] = False
            time.sleep(0.02)    # past the touch's tick of a coarse (jiffy) clock
            os.chmod(shard, os.stat(shard).st_mode)     # its ctime only

    if second == "during the check":
        real_crc32 = PackedDataset._crc32
        monkeypatch.setattr(PackedDataset, "_crc32", staticmethod(
            lambda fd, size: chmod_once() or real_crc32(fd, size)))
    else:   # between the re-open's check and the read from it
        real_open = PackedDataset._open_shard
        monkeypatch.setattr(PackedDataset, "_open_shard",
                            lambda *args: (real_open(*args), chmod_once())[0])
    for read in (lambda: dataset.read_raw(1), lambda: dataset.read_batch(range(PAIRS))):
        armed[0] = True
        _touch(shard)
        got = read()
        assert np.array_equal(np.asarray(got), first[1].numpy() if got.ndim == 3 else first)
        assert not armed[0]


def test_a_shard_whose_metadata_never_settles_is_said_to_keep_changing(phase, monkeypatch):
    dataset = _open(phase)
    dataset.read_raw(0)
    shard = phase / "shard-00000.u8"
    real_crc32 = PackedDataset._crc32

    def crc32_under_chmod(fd, size):    # its ctime moves during every check
        time.sleep(0.02)    # past the last change's tick of a coarse (jiffy) clock
        os.chmod(shard, os.stat(shard).st_mode)
        return real_crc32(fd, size)

    monkeypatch.setattr(PackedDataset, "_crc32", staticmethod(crc32_under_chmod))
    _touch(shard)
    with pytest.raises(DataError) as error:
        dataset.read_raw(1)
    message = str(error.value)
    assert message.startswith(f"{shard}: this shard keeps changing while it is read ("), message
    assert REWRITTEN not in message and "\n" not in message


def test_reader_threads_read_on_while_shards_are_touched(phase):
    """Four reader threads while the shards' mtimes move every 2 ms: each batch the packed
    pixels, no error (the reviewer's stress.py, shortened)."""
    dataset = _open(phase)
    first = dataset.read_batch(range(PAIRS)).clone()
    stop, outcomes = threading.Event(), []

    def reader(batched):
        out = torch.empty_like(first)
        try:
            while not stop.is_set():
                if batched:
                    dataset.read_batch(range(PAIRS), out=out)
                else:
                    for index in range(PAIRS):
                        out[index] = torch.from_numpy(dataset.read_raw(index))
                if not torch.equal(out, first):
                    outcomes.append("other pixels")
                    return
        except DataError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=reader, args=(number % 2,)) for number in range(4)]
    for thread in threads:
        thread.start()
    shards = sorted(phase.glob("shard-*.u8"))
    try:
        for number in range(150):
            shard = shards[number % len(shards)]
            info = os.stat(shard)
            os.utime(shard, ns=(info.st_atime_ns, info.st_mtime_ns + 1000))
            time.sleep(0.002)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    # a reader stuck past its join would report nothing: not a pass
    assert not [thread for thread in threads if thread.is_alive()], "a reader thread hung"
    assert outcomes == []


def test_a_shard_made_unreadable_says_so_not_rewritten(phase, monkeypatch):
    """chmod a-r on a checked shard: its re-open fails with EACCES, which is said as such (the
    error's cause and the shard), not as the pack rewritten. Simulated: root reads through it."""
    import errno
    dataset = _open(phase)
    dataset.read_raw(0)
    shard = phase / "shard-00000.u8"
    real_open = os.open

    def open_refused(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(shard):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_refused)
    _touch(shard)   # its ctime, as a chmod moves it
    with pytest.raises(DataError) as error:
        dataset.read_raw(1)
    message = str(error.value)
    assert message.startswith(f"{shard}: cannot read this shard ({os.strerror(errno.EACCES)}); "
                              "make it readable by this user"), message
    assert REWRITTEN not in message and "\n" not in message


@pytest.mark.parametrize("read", ["read_raw", "read_batch"])
def test_new_bytes_written_between_the_recheck_and_the_read_are_not_used(phase, monkeypatch,
                                                                         read):
    """The fstat after a read still covers it when the shard is checked again: a rewrite that
    lands after the re-check of a touched shard is the rewritten error, never its pixels."""
    dataset = _open(phase)
    dataset.read_batch(range(PAIRS))
    shard = phase / "shard-00000.u8"
    inverted = bytes(255 - b for b in shard.read_bytes())
    real_open, armed = PackedDataset._open_shard, [True]

    def open_then_rewrite(*args):
        opened = real_open(*args)
        if armed[0]:
            armed[0] = False
            _rewrite_in_place(shard, inverted)
        return opened

    monkeypatch.setattr(PackedDataset, "_open_shard", open_then_rewrite)
    _touch(shard)
    with pytest.raises(DataError) as error:
        dataset.read_raw(1) if read == "read_raw" else dataset.read_batch([1])
    _one_line_rewritten(error, phase, "shard-00000.u8")
    assert not armed[0]
