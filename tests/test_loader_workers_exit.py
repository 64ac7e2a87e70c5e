"""A run whose output pipe closes (``fastp2p train ... | head``) exits instead of hanging: its
loader worker processes ignore the stop signals a process group gets (so that the main process
can save first), so the main process must stop them itself on every way out."""
import os
import subprocess
import sys

import pytest

from helpers.train_helpers import train_argv, write_aligned_dataset


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_closed_output_pipe_ends_a_run_with_loader_workers(tmp_path, command):
    data = write_aligned_dataset(tmp_path / "data")
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs_decay", "0")
    if command == "test":
        assert subprocess.run([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                              capture_output=True, timeout=120).returncode == 0
        argv = ["test", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ckpt"),
                "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--load_size", "32",
                "--crop_size", "32", "--num_threads", "0", "--results_dir",
                str(tmp_path / "results")]
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # cwd: not the checkout, whose fastp2p/ folder would shadow the installed package
    run = subprocess.Popen([sys.executable, "-m", "fastp2p", *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    first = run.stdout.readline()
    if first.startswith(b"generator options:"):   # test's options taken from the run
        first = run.stdout.readline()
    assert first.startswith(b"threads:"), first + run.stdout.read()    # the run has started
    if command == "train":
        run.stdout.readline()   # "training tiny: ...": its loader is made
    run.stdout.close()          # as `2>&1 | head -1` does: the error line cannot be printed
    try:
        code = run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail(f"fastp2p {command} hung after its output pipe closed")
    assert code != 0
