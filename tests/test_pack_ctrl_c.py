"""Ctrl-C on `fastp2p pack --workers 2` (SIGINT to its whole process group, as a terminal sends
it): the pack stops promptly with exit code 130 and its one-line message, its folder unlocked
and its state kept, and the same command then finishes the pack.

The workers used to take the SIGINT too: most printed a KeyboardInterrupt traceback, and one
interrupted inside the pool's task queue could make the pool's terminate wait forever with the
folder locked; a Ctrl-C while the pool forked its workers could also be lost (the pack went on).
On the old code, of 90 single Ctrl-Cs at random moments of such a pack, 4 hung and 76 printed
tracebacks; of 20 right as the workers started, 5 hung. The workers ignore it now, so the
tracebacks are what this test nearly always sees of the old behaviour; the hang stays a matter
of chance, so several Ctrl-Cs at different moments each get a deadline.

`--synthetic`'s workers are started the same way: a Ctrl-C while they write pairs is one line
that says so (their tracebacks, and a line about finished shards, came before), and the same
command then writes the rest and packs them (it used to stop on the temporary files of the pairs
the workers were writing, and so did training on the folder). And a Ctrl-C that another thread
takes while the pool forks (a pool's own threads, or a caller's) is not lost: blocking
SIGINT in the main thread alone let that thread take it, and its handler then raised inside a
fork hook, which swallowed it, and the pack went on to exit 0.

SIGTERM (to the pack, or to its whole group) ends it at once with one line and exit 143, where
it used to end silently with -15.
"""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastp2p.data.folder_lock import LOCK_NAME
from helpers.data_helpers import dead_pid, make_aligned

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads a process's children from /proc")

INTERRUPTED = ("fastp2p pack: interrupted; run the same command again to resume (finished "
               "shards are kept)")
STOPPED_BY_SIGTERM = ("fastp2p pack: stopped by SIGTERM; run the same command again to resume "
                      "(finished shards are kept)")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _default_sigint() -> None:
    # a shell starts background commands (a CI step, say) with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt for it: give the pack the SIGINT a terminal's Ctrl-C has
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            cwd=cwd,    # not the checkout: its fastp2p/ would shadow the
                            start_new_session=True,     # installed package; a group of its
                            preexec_fn=_default_sigint)  # own for the Ctrl-C


def _pack(data: Path, out: Path) -> subprocess.Popen:
    # one small pair per shard: workers go back to the pool's task queue all the time, where an
    # interrupted worker used to leave it broken
    return _start([sys.executable, "-m", "fastp2p", "pack", str(data), str(out), "--workers",
                   "2", "--load_size", "192", "--pairs-per-shard", "1", "--no-progress"],
                  data.parent)


def _wait_for_workers(run: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while len(_children(run.pid)) < 2 and run.poll() is None:
        assert time.monotonic() < deadline, "the two workers did not start"
        time.sleep(0.01)
    assert run.poll() is None, ("it ended before its Ctrl-C", run.stderr.read())


def _stopped(run: subprocess.Popen, what: str) -> str:
    """``run``'s stderr once it ended, within 10 s."""
    try:
        run.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        pytest.fail(f"still running 10 s after Ctrl-C ({what})")
    return run.stderr.read().decode()


def _lock_is_free(phase_dir: Path) -> bool:
    fd = os.open(phase_dir / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _random_pairs(data: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    (data / "train").mkdir(parents=True)
    for number in range(count):
        pixels = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / "train" / f"{number:03d}.png")
    return data


def test_ctrl_c_stops_a_multi_worker_pack_promptly_and_it_resumes(tmp_path):
    data, out = _random_pairs(tmp_path / "data", 200), tmp_path / "out"
    for delay in (0.0, 0.05, 0.15):    # each run resumes the one before
        run = _pack(data, out)
        _wait_for_workers(run)
        time.sleep(delay)
        os.killpg(run.pid, signal.SIGINT)
        err = _stopped(run, f"delay {delay} s")
        assert run.returncode == 130, err
        assert err.strip() == INTERRUPTED      # one line: no worker's traceback
        assert _lock_is_free(out / "train")
        assert (out / "train" / "pack-state.json").is_file()
        assert not (out / "train" / "index.json").exists()
    finished = _pack(data, out)
    assert finished.wait(timeout=60) == 0, finished.stderr.read()
    assert (out / "train" / "index.json").is_file()


def _gone(pids: list[int]) -> bool:
    """Whether every process of ``pids`` has ended (a zombie counts: it runs nothing)."""
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        try:
            if "\nState:\tZ" not in status.read_text():
                return False
        except FileNotFoundError:
            pass
    return True


@pytest.mark.parametrize("to_group", [False, True], ids=["kill", "killpg"])
def test_sigterm_stops_a_multi_worker_pack_in_one_line_and_it_resumes(tmp_path, to_group):
    """SIGTERM (`kill`, `timeout`, a job scheduler: to the main process, or to its whole group)
    used to end the pack silently with -15. It ends it at once still (finished shards are
    recorded; a stop through the pool's terminate could wait forever on a worker the group's
    SIGTERM killed holding the task queue's lock), with one line and exit 143, the workers
    with it; the re-run resumes and removes their temporary files."""
    data, out = _random_pairs(tmp_path / "data", 200), tmp_path / "out"
    for delay in (0.0, 0.1):
        run = _pack(data, out)
        _wait_for_workers(run)
        workers = _children(run.pid)
        time.sleep(delay)
        (os.killpg if to_group else os.kill)(run.pid, signal.SIGTERM)
        err = _stopped(run, f"SIGTERM after {delay} s")
        assert run.returncode == 143, err
        assert err.strip() == STOPPED_BY_SIGTERM
        deadline = time.monotonic() + 10
        while not _gone(workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived the pack"
            time.sleep(0.05)
        assert _lock_is_free(out / "train")
        assert not (out / "train" / "index.json").exists()
    finished = _pack(data, out)
    assert finished.wait(timeout=60) == 0, finished.stderr.read()
    assert json.loads((out / "train" / "index.json").read_text())["count"] == 200
    assert not list((out / "train").glob("*.tmp-*"))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_while_synthetic_pairs_are_written_is_one_line_then_the_same_command_ends_it(
        tmp_path, stop):
    data, out = tmp_path / "data", tmp_path / "out"
    command = [sys.executable, "-m", "fastp2p", "pack", "--synthetic", "300", str(data),
               str(out), "--load_size", "16", "--workers", "2", "--no-progress"]
    run = _start(command, tmp_path)
    _wait_for_workers(run)
    time.sleep(0.2)     # into the writing of the pairs (about a second per worker's 64)
    os.killpg(run.pid, stop)
    err = _stopped(run, "--synthetic")
    assert run.returncode == 128 + stop, err
    how = "interrupted" if stop == signal.SIGINT else "stopped by SIGTERM"
    assert err.strip() == (f"fastp2p pack: {how} while writing the synthetic pairs; run the "
                           "same command again to finish them (the pairs written are kept)")
    # The workers ended mid-pair leave their temporary files (empty, or a torn JPEG), as many
    # as the Ctrl-C found writing; one more, of a process that is gone, makes sure of one. The
    # re-run the line asks for used to stop on them ("not a readable image"): it removes them.
    (data / "train" / f".0000299.jpg.tmp-{dead_pid()}.jpg").touch()
    again = _start(command, tmp_path)
    assert again.wait(timeout=120) == 0, again.stderr.read().decode()
    assert sorted(path.name for path in (data / "train").iterdir()) == [
        f"{index:07d}.jpg" for index in range(300)]
    assert json.loads((out / "train" / "index.json").read_text())["count"] == 300


# Run as a script: the thread it starts before the pack takes a SIGINT sent while the pool forks
# (from the first fork's hook, which waits until it has), as a pool's own threads can.
CTRL_C_TO_ANOTHER_THREAD = """
import os, signal, sys, threading
from fastp2p.cli import main

go, sent = threading.Event(), threading.Event()

def take_ctrl_c():
    go.wait()
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    sent.set()

def after_first_fork():
    if not go.is_set():
        go.set()
        sent.wait()

threading.Thread(target=take_ctrl_c, daemon=True).start()
os.register_at_fork(after_in_parent=after_first_fork)
sys.exit(main(sys.argv[1:]))
"""


def test_a_ctrl_c_another_thread_takes_while_the_pool_starts_stops_the_pack(tmp_path):
    data = tmp_path / "data"
    make_aligned(data, count=4)
    script = tmp_path / "ctrl_c_to_another_thread.py"
    script.write_text(CTRL_C_TO_ANOTHER_THREAD)
    run = _start([sys.executable, str(script), "pack", str(data), str(tmp_path / "out"),
                  "--workers", "2", "--load_size", "16", "--pairs-per-shard", "1"],  # with bars
                 tmp_path)
    err = _stopped(run, "a Ctrl-C during the pool's start")
    assert run.returncode == 130, err
    assert "Exception ignored" not in err and INTERRUPTED in err
