"""A --checkpoints_dir whose name is not UTF-8 (a Latin-1 `latén` from a shell: its bytes reach
Python as lone surrogates) trains and resumes: train_opt.txt holds the path's own bytes (not
UTF-8, so a resume compares no options with it, as for any options file not in UTF-8). Its
write failed with "'utf-8' codec can't encode character '\\udce9' ... surrogates not allowed",
naming no file.

In a process of its own, as from a shell: its standard output under a C.UTF-8 locale writes a
path's lone surrogates back as their bytes, which pytest's captured output refuses."""
import os
import subprocess
import sys

from helpers.train_helpers import train_argv, write_aligned_dataset


def _train(tmp_path, *argv):
    return subprocess.run([sys.executable, "-m", "fastp2p", *argv], cwd=tmp_path,
                          env={**os.environ, "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1"},
                          capture_output=True, timeout=300)


def test_a_checkpoints_dir_not_in_utf8_trains_and_resumes(tmp_path):
    data = write_aligned_dataset(tmp_path / "data")
    checkpoints = tmp_path / os.fsdecode(b"lat\xe9n")
    argv = train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html")
    first = _train(tmp_path, *argv)
    assert first.returncode == 0, first.stderr
    options = (checkpoints / "tiny" / "train_opt.txt").read_bytes()
    assert os.fsencode(f"checkpoints_dir: {checkpoints}\n") in options
    resumed = _train(tmp_path, *argv, "--n_epochs", "2", "--continue_train")
    assert resumed.returncode == 0, resumed.stderr
    assert b"resumed" in resumed.stdout, resumed.stdout
    assert b"--continue_train: took " in resumed.stdout, resumed.stdout  # options read back
