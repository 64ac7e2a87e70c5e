"""A run records its torch compute thread count in train_opt.txt, and a resume on a CPU at
another count says so in one line. QA: the count is chosen from the load average, and on a CPU
another count gave other weights (1e-6 apart after an epoch of unet_64), but it went only to
stdout, so a published run could not be reproduced bit for bit."""
import re

from fastp2p.cli import main
from fastp2p.train.saved_options import read_options
from helpers.train_helpers import train_argv

COMPUTE_THREADS = "compute_threads"   # its line in train_opt.txt


def _threads_used(out: str) -> str:
    """The compute threads the run's `threads:` line says it chose."""
    return re.search(r"-> torch (\d+) compute thread", out).group(1)


def _threads_lines(out: str) -> list:
    return [line for line in out.splitlines() if "where the run so far used" in line]


def _trained(data, checkpoints, capsys) -> tuple:
    """(train_opt.txt, the compute threads said) of train_argv's 1-epoch run in
    ``checkpoints``."""
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html", "--device",
                           "cpu")) == 0
    return checkpoints / "tiny" / "train_opt.txt", _threads_used(capsys.readouterr().out)


def test_the_run_records_its_compute_threads(data, tmp_path, capsys):
    options, used = _trained(data, tmp_path / "ckpt", capsys)
    assert read_options(options).get(COMPUTE_THREADS) == used


def test_a_resume_at_another_count_says_so_in_one_line(data, tmp_path, capsys):
    options, used = _trained(data, tmp_path / "ckpt", capsys)
    resume = train_argv(data, tmp_path / "ckpt", "--no_html", "--continue_train", "--device",
                        "cpu")
    # the same count: no line
    assert main(resume + ["--n_epochs_decay", "1"]) == 0, capsys.readouterr().err
    assert _threads_lines(capsys.readouterr().out) == []

    # a record of another count, as a run on a busier or idler machine leaves it
    other = str(int(used) + 7)
    options.write_text(options.read_text().replace(f"{COMPUTE_THREADS}: {used}\n",
                                                   f"{COMPUTE_THREADS}: {other}\n"))
    assert main(resume + ["--n_epochs_decay", "2"]) == 0, capsys.readouterr().err
    lines = _threads_lines(capsys.readouterr().out)
    assert len(lines) == 1, lines
    assert (f"torch computes with {used} thread(s) where the run so far used {other}" in lines[0]
            and f"OMP_NUM_THREADS={other}" in lines[0]), lines
    assert read_options(options)[COMPUTE_THREADS] == used   # what the resumed run computes with
