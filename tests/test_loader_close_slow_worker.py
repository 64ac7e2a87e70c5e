"""PairLoader.close does not wait for a worker busy loading an item that will never be used (a
slow image, a slow network file system). Our workers ignore SIGTERM (the main process saves
first, then stops them), and torch's shutdown joined such a worker for 5 s, sent it the SIGTERM
it ignores, joined it 5 s more and left it running: close took 10 s and the process exited only
once the item was loaded (multiprocessing's exit hook joins the worker). A worker that is idle
still exits by itself."""
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import torch

from fastp2p.data.loader import PairLoader
from helpers.train_helpers import tiny_test_argv, tiny_test_results
from helpers.train_helpers import trained  # noqa: F401 (fixture)

SLOW_S = 60   # how long the slow item takes to load: "forever", for these tests


def _write_pid(path) -> None:
    """This process's pid into ``path``, whole when the name appears."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(str(os.getpid()))
    partial.rename(path)


def _wait_for(path, timeout=60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _wait_for_pid(path, timeout=60) -> int:
    _wait_for(path, timeout)
    return int(path.read_text())


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended and been reaped (a zombie still takes signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill_if_left(pid: int) -> None:
    """A worker the old close left sleeping: killed, so a failure does not hold up the suite."""
    if not _gone(pid):
        os.kill(pid, signal.SIGKILL)


class _OneSlowItem(torch.utils.data.Dataset):
    """Eight tiny pairs; item SLOW takes SLOW_S seconds in the worker loading it, which writes
    its pid to ``folder / "slow"`` first. Every other item loaded is counted by a file in
    ``folder``."""
    SLOW = 1

    def __init__(self, folder):
        self.folder = folder

    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index == self.SLOW:
            _write_pid(self.folder / "slow")
            time.sleep(SLOW_S)
        (self.folder / f"loaded-{index}").touch()
        return {"A": torch.zeros(1), "B": torch.ones(1)}


# pinned: torch's pin-memory thread, which reads what the workers write, runs too
@pytest.mark.parametrize("pin_memory", [False, pytest.param(True, marks=pytest.mark.cuda)])
def test_close_kills_a_worker_stuck_in_an_item_and_lets_an_idle_one_exit(tmp_path, pin_memory):
    loader = PairLoader(_OneSlowItem(tmp_path), 1, shuffle=False, num_workers=2, seed=0,
                        pin_memory=pin_memory)
    batches = iter(loader)
    next(batches)
    # torch hands items out in turn: worker 1 loads the slow item 1 (then 3), worker 0 items 0,
    # 2 and 4 (the one asked for after the first batch), after which it waits for more
    busy = _wait_for_pid(tmp_path / "slow")
    for index in (2, 4):
        _wait_for(tmp_path / f"loaded-{index}")
    workers = list(loader._loader._iterator._workers)   # torch's worker processes
    idle, = (worker for worker in workers if worker.pid != busy)
    try:
        start = time.monotonic()
        loader.close()
        took = time.monotonic() - start
        assert took < 3, f"close took {took:.1f} s"   # it took 10 s
        assert _gone(busy), "the busy worker outlived close"
        assert idle.exitcode == 0, idle.exitcode     # it exited by itself, not killed
        assert _gone(idle.pid)
    finally:
        _kill_if_left(busy)


_SLOW_TEST_RUN = f"""\
import os, sys, time
from pathlib import Path

import fastp2p.data.datasets as datasets
from fastp2p.cli import main

command, started = os.getpid(), Path(sys.argv[1])
original_load = datasets.PairDataset.load


def load(self, index, rng):
    if index >= 1 and os.getpid() != command:   # a worker prefetching a pair never used
        partial = started.with_name(started.name + ".partial")
        partial.write_text(str(os.getpid()))
        partial.rename(started)
        time.sleep({SLOW_S})
    return original_load(self, index, rng)


datasets.PairDataset.load = load
sys.exit(main(sys.argv[2:]))
"""


def test_fastp2p_test_exits_promptly_with_a_worker_stuck_past_num_test(tmp_path, trained):
    """`fastp2p test --num_test 1` whose worker is stuck prefetching pair 2: the process (not
    only its loader's close) ends within seconds, complete. It took the item's whole time."""
    data, checkpoints = trained
    script, started = tmp_path / "slow_test_run.py", tmp_path / "slow"
    script.write_text(_SLOW_TEST_RUN, encoding="utf-8")
    argv = tiny_test_argv(data, checkpoints, tmp_path / "results", "--num_test", "1")
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # cwd: not the checkout, whose fastp2p/ folder would shadow the installed package
    run = subprocess.Popen([sys.executable, str(script), str(started), *argv], env=env,
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    busy = None
    try:
        busy = _wait_for_pid(started, timeout=120)
        try:
            output, _ = run.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("fastp2p test was still running 30 s after its worker got "
                                 "stuck in a pair it never uses") from None
        assert run.returncode == 0, output.decode()
        assert b"L1 to real_B over 1 image(s)" in output, output.decode()
        assert b"Traceback" not in output and b"DataLoader worker" not in output, output.decode()
        assert (tiny_test_results(tmp_path / "results") / "index.html").exists()
        assert _gone(busy), "the stuck worker outlived the command"
    finally:
        run.kill()
        run.wait()
        if busy is not None:
            _kill_if_left(busy)


_CLOSE_WITH_A_STUCK_WORKER = f"""\
import time

import torch

from fastp2p.data.loader import PairLoader


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index == 1:   # prefetched while the first batch is used: its worker gets killed
            time.sleep({SLOW_S})
        return {{"A": torch.rand(3, 8, 8), "B": torch.rand(3, 8, 8)}}


loader = PairLoader(Items(), 1, shuffle=False, num_workers=1, seed=0)
next(iter(loader))
loader.close()
"""


def test_a_worker_killed_by_close_leaves_nothing_in_tmpdir(tmp_path):
    """QA flaky #2: the worker sent its batch's tensors as file descriptors through a socket in
    a pymp-* folder of its own in TMPDIR; close killed it stuck in the next item, and the folder
    was left there at each run. The process's own folder, which the worker uses now, goes at
    its exit. The TMPDIR is a short one in /tmp, so that the folder is made in it and the check
    can fail: under one too long for the worker's socket (a path of at most 107 bytes on Linux),
    as one in tmp_path, under pytest's folders, may be, the loader makes it in /tmp instead."""
    with tempfile.TemporaryDirectory(dir="/tmp") as temp:
        # cwd: not the checkout, whose fastp2p/ folder would shadow the installed package
        run = subprocess.run([sys.executable, "-c", _CLOSE_WITH_A_STUCK_WORKER], cwd=tmp_path,
                             env={**os.environ, "TMPDIR": temp}, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert os.listdir(temp) == []
