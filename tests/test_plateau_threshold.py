"""The plateau lr policy (LRSchedule "plateau") against torch's ReduceLROnPlateau with the
reference's settings (mode min, factor 0.2, threshold 0.01 relative, patience 5): an epoch
counts as an improvement only when its metric is more than 1% below the best so far, so a loss
that creeps down by 0.1% an epoch still cuts the lr."""
import random

import pytest
import torch

from fastp2p.train.schedulers import LRSchedule

BASE_LR = 2e-4


def _torch_lrs(metrics):
    """The lr of each epoch under torch's ReduceLROnPlateau, stepped after each epoch."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=BASE_LR)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.2, threshold=0.01, threshold_mode="rel", patience=5)
    lrs = []
    for metric in metrics:
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(metric)
    return lrs


def _our_lrs(metrics):
    schedule = LRSchedule("plateau", BASE_LR, n_epochs=1, n_epochs_decay=0)
    lrs = []
    for epoch, metric in enumerate(metrics, 1):
        lrs.append(schedule.lr_for_epoch(epoch))
        schedule.observe(metric)
    return lrs


def _noisy(seed):
    rng = random.Random(seed)
    metric, metrics = 5.0, []
    for _ in range(40):
        metric *= 1.0 + rng.uniform(-0.03, 0.015)
        metrics.append(metric)
    return metrics


SEQUENCES = {
    "creeping-down-0.1%": [5.0 * 0.999 ** k for k in range(14)],
    "down-2%": [5.0 * 0.98 ** k for k in range(14)],
    "down-0.5%-then-3%": [5.0 * 0.995 ** k for k in range(8)] + [4.8 * 0.97 ** k for k in range(8)],
    "noisy-1": _noisy(1),
    "noisy-2": _noisy(2),
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_plateau_lrs_equal_torch_reduce_lr_on_plateau(name):
    metrics = SEQUENCES[name]
    expected = _torch_lrs(metrics)
    assert _our_lrs(metrics) == pytest.approx(expected, rel=1e-12)


def test_a_loss_improving_by_less_than_one_percent_cuts_the_lr():
    """Six epochs each 0.1% better than the last: none beats the first by 1%, so after the
    patience of 5 the lr is cut by 0.2."""
    lrs = _our_lrs([5.0 * 0.999 ** k for k in range(8)])
    assert lrs[:7] == [BASE_LR] * 7
    assert lrs[7] == pytest.approx(BASE_LR * 0.2)
