"""Files fastp2p reads back from a run folder open only as regular files, without blocking
(fastp2p.file_reads): a FIFO planted at train_opt.txt or at a network file's name made
`fastp2p test` hang, and a link to /dev/zero at the manifest's name read until memory ran out
(a MemoryError traceback, or the OOM killer). Now each is one error line naming the file."""
import os
import shutil
import signal
import subprocess
import sys

import pytest

from fastp2p.file_reads import NotAFileToRead, open_to_read, read_text
from fastp2p.json_files import read_json
from fastp2p.nn.checkpoint import load_safely
from helpers.train_helpers import tiny_test_argv, trained  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")


def _blocked(signal_number, frame):
    raise TimeoutError("the read blocked")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # a read that blocks fails the test in 10 s instead of hanging the suite
    previous = signal.signal(signal.SIGALRM, _blocked)
    try:
        for read in (open_to_read, read_text, read_json, load_safely):
            signal.alarm(10)
            with pytest.raises(NotAFileToRead, match=f"{fifo} is a special file"):
                read(fifo)
            signal.alarm(0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_descriptor_that_cannot_be_made_blocking_is_closed(tmp_path, monkeypatch):
    """The non-blocking open's descriptor leaked when making it blocking again failed."""
    path = tmp_path / "a.txt"
    path.write_text("text")

    def fail(fd, blocking):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "set_blocking", fail)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        read_text(path)
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_device_behind_a_link_is_refused(tmp_path):
    link = tmp_path / "latest_checkpoint.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="is a special file"):
        read_json(link)


def test_regular_files_read_through_links_and_folders_are_oserrors(tmp_path):
    (tmp_path / "real.json").write_text('{"a": 1}')
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    assert read_json(tmp_path / "link.json") == {"a": 1}
    with pytest.raises(IsADirectoryError):
        read_text(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "missing")


@pytest.mark.parametrize("name, plant, refused", [
    ("train_opt.txt", "fifo", False),   # only read to say what differs: skipped as unreadable
    ("latest_net_G.pth", "fifo", True),
    ("latest_checkpoint.json", "/dev/zero", True),
])
def test_fastp2p_test_does_not_block_on_a_planted_special_file(trained, tmp_path, name, plant,
                                                                refused):
    data, checkpoints = trained
    run = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, run)
    target = run / "tiny" / name
    target.unlink()
    if plant == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(plant)
    argv = tiny_test_argv(data, run, tmp_path / "results")
    # from tmp_path: in the checkout, `-m fastp2p` would import its source folder (no kernels/)
    # ahead of the installed package
    done = subprocess.run([sys.executable, "-m", "fastp2p", *argv], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    if refused:
        assert f"{target} is a special file" in done.stderr, done.stderr
        assert done.returncode == 1
    else:
        assert done.returncode == 0, done.stderr
