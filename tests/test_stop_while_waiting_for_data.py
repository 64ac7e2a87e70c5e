"""A stop request (SIGTERM, Ctrl-C) that comes while `fastp2p train` waits for a batch is taken
there: latest_* is saved (as of the last step) and the run exits with 128 + the signal within
seconds. The loop checked for it only after each step, so with a batch that never came (a hung
network file system, a worker stuck in a decoder) it was ignored for as long as the wait lasted:
over 20 minutes, seen."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import logged_steps, train_argv, write_aligned_dataset

# How long the run may take from the signal to its end: the save, the workers' close
STOP_BOUND_S = 30

# A `fastp2p train` (or test) whose loader hands out one item of the split argv[2], then waits
# forever for the next (its load, in a worker or in this process, sleeps once the item is read),
# saying so in the file argv[1] first. Other splits' loads (test's mean train image) go on.
BATCH_NEVER_COMES = """
import sys, time
from pathlib import Path
import fastp2p.data.datasets as datasets
from fastp2p.cli import main
blocked_marker, split, loads, load = sys.argv[1], sys.argv[2], [], datasets.PairDataset.load

def load_once_then_block(self, index, rng):
    item = load(self, index, rng)
    if Path(item["A_paths"]).parent.name == split:
        loads.append(index)
        if len(loads) > 1:
            open(blocked_marker, "w").close()
            time.sleep(3600)
    return item
datasets.PairDataset.load = load_once_then_block
sys.exit(main(sys.argv[3:]))
"""


def wait_for(condition, run, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None and condition(), run.communicate()[0]


def stopped_while_blocked(tmp_path, command, argv, started, number, waiting_for):
    """(returncode, output) of ``command`` run with ``argv`` (its loader never handing out a
    second item), sent ``number`` a second after ``started()`` holds: it is then past its first
    item's stop check, waiting for the next; fails where it is still running STOP_BOUND_S
    later. Its whole process group is killed afterwards."""
    blocked = tmp_path / "blocked"
    run = subprocess.Popen([sys.executable, "-c", BATCH_NEVER_COMES, str(blocked), command,
                            *argv],
                           cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           start_new_session=True,   # its group: it and its worker
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: blocked.exists() and started(), run)
        time.sleep(1)
        run.send_signal(number)
        try:
            output = run.communicate(timeout=STOP_BOUND_S)[0]
        except subprocess.TimeoutExpired:
            pytest.fail(f"{signal.Signals(number).name} ignored while {command} waited for "
                        f"{waiting_for}", pytrace=False)
    finally:   # a worker left sleeping holds the output pipe: the whole group goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
    return run.returncode, output


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_while_the_next_batch_never_comes_saves_and_exits(tmp_path, workers, number):
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "ckpt", "--no_html")
    argv[argv.index("--num_threads") + 1] = str(workers)
    folder = tmp_path / "ckpt" / "tiny"
    returncode, output = stopped_while_blocked(
        tmp_path, "train", argv, lambda: logged_steps(folder) == [1], number, "a batch")
    assert returncode == 128 + number, output
    name = signal.Signals(number).name
    assert f"{name} received: saved {folder}/latest_* at step 1" in output, output
    assert "Traceback" not in output, output
    assert CheckpointFolder(tmp_path / "ckpt", "tiny").load_train_state("latest")[
        "engine"]["steps"] == 1
