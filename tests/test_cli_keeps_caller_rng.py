"""fastp2p.cli.main called from Python gives the caller its torch random state back: train and
test seed torch with --seed, and a resume sets the saved run's state (QA notebook 1: after a
call every caller seed drew the same numbers)."""
import torch

from fastp2p.cli import main
from helpers.train_helpers import tiny_test_argv, train_argv, write_aligned_dataset


def _draws_after(argv, seed: int) -> torch.Tensor:
    """What torch.rand draws after ``main(argv)``, called with torch seeded with ``seed``."""
    torch.manual_seed(seed)
    torch.rand(3)
    assert main(argv) == 0
    return torch.rand(3)


def test_train_resume_and_test_leave_the_caller_s_random_state(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=1)
    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    torch.manual_seed(1234)
    torch.rand(3)
    expected = torch.rand(3)
    one_epoch = train_argv(data, checkpoints, "--n_epochs_decay", "0")
    assert torch.equal(_draws_after(one_epoch, 1234), expected)
    resumed = train_argv(data, checkpoints, "--continue_train", "--n_epochs", "2",
                         "--n_epochs_decay", "0")
    assert torch.equal(_draws_after(resumed, 1234), expected)
    assert torch.equal(_draws_after(tiny_test_argv(data, checkpoints, results), 1234), expected)
