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


def test_sigterm_to_the_process_group_saves_and_exits_143(tmp_path):
    data = write_aligned_dataset(tmp_path / "data")
    argv = _with_workers(train_argv(data, tmp_path / "ckpt", "--n_epochs", "500", "--no_html"))
    folder = tmp_path / "ckpt" / "tiny"
    run = subprocess.Popen([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                           env=CHILD_ENV, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not logged_steps(folder) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()[0]
        os.killpg(run.pid, signal.SIGTERM)   # the main process and its loader workers
        output = run.communicate(timeout=120)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM received: saved" in output and "worker died" not in output, output
    saved = CheckpointFolder(tmp_path / "ckpt", "tiny")
    state = saved.load_train_state("latest")   # checksums checked: the set is whole
    assert saved.manifest("latest")["step"] == state["engine"]["steps"] \
        == logged_steps(folder)[-1]


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
    lines = [line for line in out.splitlines() if "data loader worker died" in line]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    assert name in lines[0] and cause in lines[0], lines[0]
    assert "probably out of memory" not in lines[0], lines[0]
    assert "--continue_train" in lines[0] and "no checkpoint was written" in lines[0], lines[0]
