"""Loader workers that cannot all be started (the limit on open files reached part way, as under
`ulimit -n 16` with --num_threads 2), or whose batches cannot be received (`ulimit -n 20`), are
one line naming that limit, never the disk, in train and test (which said a bare "[Errno 24]
Too many open files" and nothing to do), and the process exits: the workers already started
ignore the SIGTERM that multiprocessing's exit hook stops them with, and its join waited for
them forever."""
import errno
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import _utils
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from fastp2p.cli import main
from fastp2p.data.loader import WorkersNotStarted, create_dataloader
from helpers.train_helpers import (one_line, tiny_test_argv, train_argv, train_tiny_run,
                                   write_aligned_dataset)

# Starts the first of two workers, then lowers the open-file limit to the lowest free
# descriptor, so that the second worker's queue (a pipe) fails with EMFILE.
_FIRST_WORKER_THEN_NO_FILES = """
import multiprocessing, os, resource
import torch
from fastp2p.data.loader import create_dataloader

real_start = multiprocessing.process.BaseProcess.start

def start_then_no_files(process):
    real_start(process)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))

multiprocessing.process.BaseProcess.start = start_then_no_files
loader = create_dataloader(torch.rand(8, 3), 2, shuffle=False, num_workers=2, seed=0)
try:
    iter(loader)
except OSError as err:
    print(type(err).__name__, err.errno, len(multiprocessing.active_children()))
"""


def test_workers_started_before_a_limit_is_reached_end_and_the_process_exits(tmp_path):
    try:
        run = subprocess.run([sys.executable, "-c", _FIRST_WORKER_THEN_NO_FILES], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung at exit, waiting for a loader worker it had started")
    assert run.returncode == 0, run.stderr
    # the error says the workers were not started; none of them is left running
    assert run.stdout.split() == ["WorkersNotStarted", str(errno.EMFILE), "0"], run.stdout
    assert "Traceback" not in run.stderr, run.stderr


def test_a_failure_after_the_workers_are_recorded_leaves_torch_no_record_of_them(monkeypatch):
    """A failure (or a Ctrl-C) after torch recorded the workers' pids by the iterator's id():
    the record stayed, and a later iterator at the same address could not record its own."""
    failed = []

    def reset_out_of_files(iterator, loader, first_iter=False):
        failed.append(iterator)
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    monkeypatch.setattr(_MultiProcessingDataLoaderIter, "_reset", reset_out_of_files)
    loader = create_dataloader(torch.rand(8, 3), 2, shuffle=False, num_workers=1, seed=0)
    with pytest.raises(WorkersNotStarted):
        iter(loader)
    with pytest.raises(ValueError, match="Cannot find worker information"):
        _utils.signal_handling._remove_worker_pids(id(failed[0]))


def test_train_names_the_open_file_limit_not_the_disk(tmp_path, monkeypatch, capsys):
    def out_of_files(iterator, loader):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    monkeypatch.setattr(_MultiProcessingDataLoaderIter, "__init__", out_of_files)
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "ckpt", "--no_html")
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert "could not start the data loader's 1 worker process(es)" in line, line
    assert os.strerror(errno.EMFILE) in line and "ulimit -n" in line, line
    assert "--num_threads" in line and "no checkpoint was written" in line, line
    assert "disk" not in line, line


def _out_of_files(*args, **kwargs):
    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def _batch_not_received(*args, **kwargs):
    """torch's own error where a batch's file descriptors could not be received (EMFILE)."""
    raise RuntimeError("Too many open files. Communication with the workers is no longer "
                       "possible. Please increase the limit using `ulimit -n` in the shell")


def test_train_names_the_open_file_limit_where_batches_cannot_be_received(tmp_path,
                                                                          monkeypatch, capsys):
    """With a few descriptors more than `ulimit -n 16`, the workers started but their batches
    could not be received: torch's RuntimeError was a traceback (of about 550 lines)."""
    monkeypatch.setattr(_MultiProcessingDataLoaderIter, "_try_get_data", _batch_not_received)
    argv = train_argv(write_aligned_dataset(tmp_path / "data"), tmp_path / "ckpt", "--no_html")
    argv[argv.index("--num_threads") + 1] = "1"   # one loader worker process
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("fastp2p train: error: could not receive the batches of the data "
                           "loader's 1 worker process(es) ([Errno 24] Too many open files): "
                           "raise"), line
    assert "ulimit -n" in line and "--num_threads" in line, line
    assert "no checkpoint was written" in line, line


@pytest.mark.parametrize("where, num_threads, advice", [
    ((_MultiProcessingDataLoaderIter, "__init__", _out_of_files), "1",
     "or use fewer --num_threads"),
    ((_MultiProcessingDataLoaderIter, "_try_get_data", _batch_not_received), "1",
     "or use fewer --num_threads"),
    (("fastp2p.train.sample_images.save_image", _out_of_files), "0", ", then run it again")],
    ids=["loader-workers", "loader-batches", "an-image-write"])
def test_test_names_the_open_file_limit_and_what_to_do(tmp_path, monkeypatch, capsys, where,
                                                       num_threads, advice):
    data = write_aligned_dataset(tmp_path / "data", pairs=2)
    checkpoints = train_tiny_run(data, tmp_path / "ckpt")
    monkeypatch.setattr(*where)
    argv = tiny_test_argv(data, checkpoints, tmp_path / "res")
    argv[argv.index("--num_threads") + 1] = num_threads
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert os.strerror(errno.EMFILE) in line and "ulimit -n" in line and advice in line, line
    assert "0 of 2 images written" in line, line
