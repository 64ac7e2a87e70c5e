"""A checkpoint writer thread that cannot start (the limit on processes and threads reached: a
container's pids limit, `ulimit -u`) is one warning line, and train writes its checkpoints and
samples in the training thread: it was a traceback at the first save (seen at pids.max 10,
where the loader's worker still started), and the steps since the start were lost.

Emulated where threading raises it, as tests/test_loader_thread_limit.py does (a real limit
needs a pids cgroup, or a user that is not root)."""
import threading

import pytest

from fastp2p.cli import main
from fastp2p.train.background_writer import BackgroundWriter
from fastp2p.train.checkpoints import CheckpointFolder
from helpers.memory_limit import ample_memory_limit
from helpers.train_helpers import train_argv, write_aligned_dataset

_WRITER_NOT_STARTED = ("warning: could not start the thread that writes checkpoints and "
                       "samples (the limit on processes and threads reached: ulimit -u, or a "
                       "container's pids limit); they are written in the training thread, "
                       "which waits for each")


def _refuse_writer_threads(monkeypatch) -> list:
    """``threading.Thread.start`` refusing the writer's threads; the threads it refused."""
    start, refused = threading.Thread.start, []

    def start_or_refuse(thread):
        if thread.name.startswith("fastp2p-writer"):
            refused.append(thread)
            raise RuntimeError("can't start new thread")
        start(thread)
    monkeypatch.setattr(threading.Thread, "start", start_or_refuse)
    return refused


def test_train_writes_in_its_own_thread_where_the_writer_cannot_start(tmp_path, monkeypatch,
                                                                     capsys):
    data = write_aligned_dataset(tmp_path / "data")
    refused = _refuse_writer_threads(monkeypatch)
    assert main(train_argv(data, tmp_path / "ckpt", "--save_latest_freq", "2")) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "warning" in line] == [
        _WRITER_NOT_STARTED], err
    assert "Traceback" not in err and len(refused) == 1, err   # tried once, said once
    saved = CheckpointFolder(tmp_path / "ckpt", "tiny")
    for label in ("latest", "2"):   # checksums checked: each set is whole
        assert saved.load_train_state(label)["engine"]["steps"] == 8
    assert (saved.path / "web" / "index.html").is_file()   # the page, a report job


def test_a_job_written_in_the_calling_thread_raises_its_error_at_the_next_wait(monkeypatch):
    """As on the writer thread: ``submit`` returns, the failure is raised by the next ``wait``
    (or ``submit``)."""
    warnings, ran = [], []
    writer = BackgroundWriter(warn=warnings.append)
    _refuse_writer_threads(monkeypatch)
    writer.submit(lambda: ran.append(threading.current_thread()))

    def fail():
        raise OSError("disk full")
    writer.submit(fail)
    assert ran == [threading.main_thread()] and writer.failed and len(warnings) == 1
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.close()


def test_the_writer_names_the_memory_limit_too_where_one_is_set(monkeypatch):
    """Under `ulimit -v` a thread whose stack cannot be mapped is refused alike."""
    warnings = []
    _refuse_writer_threads(monkeypatch)
    with ample_memory_limit() as memory_limit:
        writer = BackgroundWriter(warn=warnings.append)
        writer.submit(int)
    writer.close()
    assert warnings == [_WRITER_NOT_STARTED.replace(
        "pids limit); ", f"pids limit; or {memory_limit}, too low for a thread's stack); ")]


def test_an_interrupt_of_a_job_in_the_calling_thread_goes_on_at_once(monkeypatch):
    """A second Ctrl-C (a KeyboardInterrupt) in a write done in the training thread goes on
    from ``submit`` at once; kept as a job's error, ``submit`` would return and the run train
    on until its next ``submit`` or ``wait``."""
    writer = BackgroundWriter()
    _refuse_writer_threads(monkeypatch)

    def interrupted():
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        writer.submit(interrupted)
    assert writer.failed and not writer._pending   # nothing left to raise it again
    writer.close()
