"""read_text's max_bytes bounds what is read, not what is reserved: a read of max_bytes + 1
characters reserved 1 GiB for every pack index (MAX_INDEX_BYTES), a MemoryError traceback under
`ulimit -v` or strict overcommit (review r42)."""
import tracemalloc

import pytest

from fastp2p.file_reads import FileTooLarge, read_text


def test_a_small_file_under_a_large_limit_reserves_little(tmp_path):
    path = tmp_path / "index.json"
    path.write_text('{"count": 1}')
    tracemalloc.start()
    try:
        assert read_text(path, 1 << 30) == '{"count": 1}'
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path):
    """The size is checked before the read: a 64 MiB file under a 1 MiB limit was read whole
    (twice its size in memory for a moment) and only then refused."""
    path = tmp_path / "pack-state.json"
    with open(path, "wb") as handle:
        handle.truncate(64 << 20)   # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(FileTooLarge) as error:
            read_text(path, 1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.value.size == 64 << 20
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("extra", [0, 1])
def test_the_limit_is_exact(tmp_path, extra):
    path = tmp_path / "f.txt"
    path.write_text("x" * (100 + extra))
    if extra:
        with pytest.raises(FileTooLarge, match="101 bytes, more than the 100"):
            read_text(path, 100)
    else:
        assert read_text(path, 100) == "x" * 100


def test_a_file_grown_after_the_size_check_is_read_up_to_the_limit(tmp_path, monkeypatch):
    """A writer appending between the fstat and the read: what it added counts too."""
    import fastp2p.file_reads as file_reads

    path = tmp_path / "f.txt"
    path.write_text("x" * 10)
    real_fstat = file_reads.os.fstat

    def fstat_then_grow(fd):   # open_to_read's fstat, then read_text's size check
        info = real_fstat(fd)
        calls.append(fd)
        if len(calls) == 2:
            with open(path, "a") as grow:
                grow.write("y" * grow_by)
        return info

    monkeypatch.setattr(file_reads.os, "fstat", fstat_then_grow)
    calls, grow_by = [], 5
    assert read_text(path, 100) == "x" * 10 + "y" * 5
    calls, grow_by = [], 200
    with pytest.raises(FileTooLarge):
        read_text(path, 100)
