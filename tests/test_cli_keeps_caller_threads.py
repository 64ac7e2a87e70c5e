"""fastp2p.cli.main called from Python gives the caller its torch thread count back: train and
test set their own (QA r40 L2: a caller's 2 threads stayed at the command's 1)."""
import os

import torch

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, train_argv, write_aligned_dataset


def test_train_and_test_leave_the_caller_s_thread_count(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    before = torch.get_num_threads()
    # more than this machine's cores: no choice the commands make (at most the usable cores)
    # can equal it by chance
    mine = len(os.sched_getaffinity(0)) + 3
    torch.set_num_threads(mine)
    try:
        assert main(train_argv(data, tmp_path / "checkpoints", "--n_epochs_decay", "0")) == 0
        assert torch.get_num_threads() == mine
        assert main(tiny_test_argv(data, tmp_path / "checkpoints", tmp_path / "results")) == 0
        assert torch.get_num_threads() == mine
    finally:
        torch.set_num_threads(before)
