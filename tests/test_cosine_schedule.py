"""--lr_policy cosine is the reference's CosineAnnealingLR(T_max=n_epochs, eta_min=0), stepped
once per epoch for all n_epochs + n_epochs_decay epochs: after T_max it rises again (the old
schedule held it at 0 for all of --n_epochs_decay)."""
import csv

import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.schedulers import LRSchedule
from helpers.train_helpers import train_argv, write_aligned_dataset


def torch_cosine_lrs(base_lr, n_epochs, epochs):
    """The reference: CosineAnnealingLR(optimizer, T_max=n_epochs, eta_min=0), the lr of each
    epoch read before the scheduler is stepped at its end."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs,
                                                           eta_min=0)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("n_epochs,n_decay,epoch_count", [(4, 4, 1), (3, 9, 1), (5, 2, 3),
                                                          (1, 3, 1)])
def test_cosine_is_cosine_annealing_lr_over_every_epoch(n_epochs, n_decay, epoch_count):
    epochs = n_epochs + n_decay - epoch_count + 1
    expected = torch_cosine_lrs(2e-4, n_epochs, epochs)
    schedule = LRSchedule("cosine", 2e-4, n_epochs=n_epochs, n_epochs_decay=n_decay,
                          epoch_count=epoch_count)
    got = [schedule.lr_for_epoch(e) for e in range(epoch_count, epoch_count + epochs)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)
    after_zero = got[n_epochs + 1:]     # epochs after the lr reached 0 (from epoch_count 1)
    assert not after_zero or max(after_zero) > 0    # it rises again


def test_the_reviewers_example():
    schedule = LRSchedule("cosine", 2e-4, n_epochs=4, n_epochs_decay=4)
    got = [schedule.lr_for_epoch(e) for e in range(1, 9)]
    assert got == pytest.approx([2e-4, 1.7071e-4, 1e-4, 2.9289e-5, 0, 2.9289e-5, 1e-4,
                                 1.7071e-4], rel=1e-4, abs=1e-12)


def test_cosine_across_a_resume_from_the_saved_state():
    n_epochs, n_decay = 3, 5
    expected = torch_cosine_lrs(2e-4, n_epochs, n_epochs + n_decay)
    first = LRSchedule("cosine", 2e-4, n_epochs=n_epochs, n_epochs_decay=n_decay)
    got = [first.lr_for_epoch(e) for e in range(1, 5)]
    resumed = LRSchedule("cosine", 2e-4, n_epochs=n_epochs, n_epochs_decay=n_decay)
    resumed.load_state_dict(first.state_dict(), epoch=5)
    got += [resumed.lr_for_epoch(e) for e in range(5, n_epochs + n_decay + 1)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_training_with_cosine_logs_the_reference_lrs(tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    argv = train_argv(data, tmp_path / "ckpt", "--lr_policy", "cosine", "--n_epochs", "2",
                      "--n_epochs_decay", "2", "--no_html")
    assert main(argv) == 0
    with open(tmp_path / "ckpt" / "tiny" / "loss_log.csv", newline="") as handle:
        lrs = [float(row["lr"]) for row in csv.DictReader(handle)]
    expected = [lr for lr in torch_cosine_lrs(2e-4, 2, 4) for _ in range(2)]  # 2 steps/epoch
    assert lrs == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert lrs[-1] == pytest.approx(1e-4)
