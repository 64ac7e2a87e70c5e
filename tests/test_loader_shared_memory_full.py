"""A full /dev/shm (Docker's default is 64 MB: a few batches of 16 at 256 px in flight) ends
train and test in one line naming /dev/shm and what to do, and the segment torch made for the
batch it could not allocate is removed (torch's RuntimeError, with the worker's traceback, was
70 lines, and each failed run left its segments in /dev/shm for the container's lifetime).

The workers are forked, so torch's allocation, replaced here, fails in them as it does there:
the segment made (as torch makes it, before it allocates), then torch's error."""
import errno
import os
import sys

import pytest
import torch

from fastp2p.cli import main
from helpers.train_helpers import (one_line, tiny_test_argv, train_argv, train_tiny_run,
                                   write_aligned_dataset)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="POSIX shared memory is in /dev/shm on Linux")


@pytest.fixture
def fill_shared_memory(monkeypatch):
    """A call that makes each batch a worker then puts in shared memory fail as a full /dev/shm
    fails it; the test fails if any of those segments is left."""
    prefix = f"torch_fastp2p_test_{os.getpid()}_"

    def no_space(cls, size):
        name = f"/{prefix}{os.getpid()}"
        with open("/dev/shm" + name, "wb") as segment:
            segment.truncate(size)
        raise RuntimeError(f"unable to allocate shared memory(shm) for file <{name}>: "
                           f"{os.strerror(errno.ENOSPC)} ({errno.ENOSPC})")
    yield lambda: monkeypatch.setattr(torch.UntypedStorage, "_new_using_fd_cpu",
                                      classmethod(no_space))
    left = [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]
    for name in left:
        os.unlink(os.path.join("/dev/shm", name))
    assert not left, f"segments left in /dev/shm: {left}"


def _assert_shared_memory_line(line: str, command: str) -> None:
    assert line.startswith(f"fastp2p {command}: error: could not pass the batches of the data "
                           "loader's 2 worker process(es) through the shared memory in /dev/shm "
                           "([Errno 28] No space left on device): make /dev/shm larger "
                           "(docker run --shm-size"), line
    assert "--num_threads (0 loads the data in this process)" in line, line


def test_train_says_the_shared_memory_is_full_in_one_line(tmp_path, fill_shared_memory,
                                                          capsys):
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "ckpt", "--no_html")
    argv[argv.index("--num_threads") + 1] = "2"
    fill_shared_memory()
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    _assert_shared_memory_line(line, "train")
    assert line.endswith("then run it again; no checkpoint was written"), line


def test_test_says_the_shared_memory_is_full_in_one_line(tmp_path, fill_shared_memory, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    checkpoints = train_tiny_run(data, tmp_path / "ckpt")
    argv = tiny_test_argv(data, checkpoints, tmp_path / "res")
    argv[argv.index("--num_threads") + 1] = "2"
    capsys.readouterr()
    fill_shared_memory()
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    _assert_shared_memory_line(line, "test")
    assert "0 of 2 images written" in line, line
