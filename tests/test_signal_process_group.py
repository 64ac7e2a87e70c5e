"""SIGTERM to a training run's whole process group (scancel, systemd, `kill -- -PGID`) reaches
its data loader workers too: they ignore it, so the main process saves latest_* and exits with
128 + 15 instead of reporting a dead worker; a worker that another signal kills is not blamed on
memory."""
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

import fastp2p.data.datasets as datasets_module
from fastp2p.cli import main
from fastp2p.train.checkpoints import CheckpointFolder
from helpers.train_helpers import logged_steps, train_argv, write_aligned_dataset

# The child imports the fastp2p this test imports (the installed package, or the suite's
# PYTHONPATH); it runs in tmp_path, so `python -m` never imports a source folder instead.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _with_workers(argv, workers=2):
    argv = list(argv)
    argv[argv.index("--num_threads") + 1] = str(workers)
    return argv


def _start_in_its_own_group(tmp_path, argv):
    """`python -m fastp2p ARGV` in a new session (its process group: it and its workers), and
    the run's folder, once it has logged a step."""
    run = subprocess.Popen([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                           env=CHILD_ENV, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    folder = tmp_path / "ckpt" / "tiny"
    _wait_for(lambda: logged_steps(folder), run)
    return run


def _wait_for(condition, run, timeout=120.0):
    """Until ``condition()`` holds; fails with the run's output if the run ended first."""
    deadline = time.monotonic() + timeout
    while not condition() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, run.communicate()[0]


def _stop(run, number=signal.SIGTERM) -> str:
    """Send ``number`` to the run's process group; its output once it has ended."""
    try:
        os.killpg(run.pid, number)   # the main process and its loader workers
        return run.communicate(timeout=120)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def test_sigterm_to_the_process_group_saves_and_exits_143(tmp_path):
    data = write_aligned_dataset(tmp_path / "data")
    argv = _with_workers(train_argv(data, tmp_path / "ckpt", "--n_epochs", "500", "--no_html"))
    folder = tmp_path / "ckpt" / "tiny"
    run = _start_in_its_own_group(tmp_path, argv)
    output = _stop(run)
    assert run.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM received: saved" in output and "worker died" not in output, output
    saved = CheckpointFolder(tmp_path / "ckpt", "tiny")
    state = saved.load_train_state("latest")   # checksums checked: the set is whole
    assert saved.manifest("latest")["step"] == state["engine"]["steps"] \
        == logged_steps(folder)[-1]


@pytest.mark.parametrize("number", [signal.SIGUSR1, signal.SIGUSR2])
def test_sigusr_to_the_process_group_saves_and_trains_on(tmp_path, number):
    """SLURM's --signal=USR1@60 warns a job so before its time limit: latest_* is saved at the
    next step and the run trains on, its workers too (the SIGTERM at the limit stops it). An
    epoch of 64 pairs keeps the workers loading when the signal comes."""
    data = write_aligned_dataset(tmp_path / "data", pairs=64)
    argv = _with_workers(train_argv(data, tmp_path / "ckpt", "--n_epochs", "500", "--no_html"))
    run = _start_in_its_own_group(tmp_path, argv)
    saved = CheckpointFolder(tmp_path / "ckpt", "tiny")
    os.killpg(run.pid, number)
    _wait_for(lambda: saved.manifest("latest") is not None, run)
    step = saved.manifest("latest")["step"]
    _wait_for(lambda: logged_steps(saved.path)[-1] > step + 2, run)   # it trains on
    output = _stop(run)
    assert run.returncode == 128 + signal.SIGTERM, output
    name = signal.Signals(number).name
    assert f"{name} received: saving {saved.path}/latest_* at step {step}; training goes on" \
        in output, output
    assert "worker died" not in output and "SIGTERM received: saved" in output, output


@pytest.mark.parametrize("number, name, cause", [
    (signal.SIGHUP, "Hangup", "from outside this run"),
    (signal.SIGSEGV, "Segmentation fault", "the worker crashed")])  # e.g. a decoder's fault
def test_a_worker_killed_by_another_signal_is_not_called_out_of_memory(tmp_path, monkeypatch,
                                                                        capfd, number, name,
                                                                        cause):
    data = write_aligned_dataset(tmp_path / "data")
    original_load = datasets_module.PairDataset.load
    parent = os.getpid()

    def load_or_hang_up(self, index, rng):
        if os.getpid() != parent:   # in a worker process
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core file from SIGSEGV
            # killed even where the suite runs with the signal ignored (under nohup: SIGHUP)
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        return original_load(self, index, rng)
    monkeypatch.setattr(datasets_module.PairDataset, "load", load_or_hang_up)
    assert main(_with_workers(train_argv(data, tmp_path / "ckpt", "--no_html"))) == 1
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if "data loader worker died" in line]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    assert name in lines[0] and cause in lines[0], lines[0]
    assert "probably out of memory" not in lines[0], lines[0]
    # nothing to resume: run again (advising --continue_train here was refused when followed)
    assert "run it again; no checkpoint was written" in lines[0], lines[0]
    assert "--continue_train" not in lines[0], lines[0]
