"""The lr policies give the reference implementation's (torch.optim.lr_scheduler's) values."""
import math

import pytest
import torch

from fastp2p.train.schedulers import LRSchedule


def _torch_lrs(make_scheduler, epochs, metrics=None):
    """lr of each epoch when torch's scheduler is stepped after every epoch (the reference)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for index in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[index])
    return lrs


@pytest.mark.parametrize("epoch_count", [1, 4])
def test_linear_is_the_reference_lambda_rule(epoch_count):
    n_epochs, n_decay = 5, 7

    def lambda_rule(epoch):  # the reference's networks.get_scheduler, verbatim math
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_decay + 1)
    epochs = n_epochs + n_decay - epoch_count + 1
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda_rule), epochs)
    schedule = LRSchedule("linear", 2e-4, n_epochs=n_epochs, n_epochs_decay=n_decay,
                          epoch_count=epoch_count)
    got = [schedule.lr_for_epoch(e) for e in range(epoch_count, epoch_count + epochs)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[-1] > 0 and got[0] == 2e-4


def test_step_and_cosine_match_torch():
    step = LRSchedule("step", 2e-4, n_epochs=10, n_epochs_decay=0, lr_decay_iters=3)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.1), 10)
    assert [step.lr_for_epoch(e) for e in range(1, 11)] == pytest.approx(expected)
    cosine = LRSchedule("cosine", 2e-4, n_epochs=10, n_epochs_decay=0)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10), 11)
    assert [cosine.lr_for_epoch(e) for e in range(1, 12)] == pytest.approx(expected, abs=1e-12)


def test_plateau_matches_reduce_lr_on_plateau():
    metrics = [5.0, 4.0, 3.99, 3.98, 3.97, 3.96, 3.95, 3.94, 2.0] + [2.0] * 8
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, mode="min", factor=0.2, threshold=0.01, patience=5), len(metrics), metrics)
    schedule = LRSchedule("plateau", 2e-4, n_epochs=1, n_epochs_decay=0)
    got = []
    for epoch, metric in enumerate(metrics, start=1):
        got.append(schedule.lr_for_epoch(epoch))
        schedule.observe(metric)
    assert got == pytest.approx(expected)
    assert min(got) < 2e-4
    restored = LRSchedule("plateau", 2e-4, n_epochs=1, n_epochs_decay=0)
    restored.load_state_dict(schedule.state_dict(), epoch=99)
    assert restored.lr_for_epoch(99) == schedule.lr_for_epoch(99)
    schedule.observe(math.nan)  # a non-finite epoch metric is ignored
    assert schedule.state_dict() == restored.state_dict()


@pytest.mark.parametrize("policy, counts", [
    ("linear", {"n_epochs": 1, "n_epochs_decay": 10 ** 400}),
    ("cosine", {"n_epochs": 10 ** 400, "n_epochs_decay": 0}),
], ids=["linear-decay-past-any-float", "cosine-n_epochs-past-any-float"])
def test_counts_past_any_float_give_the_schedules_lrs(policy, counts):
    """The options take any int: a float() of one raised OverflowError (a traceback)."""
    schedule = LRSchedule(policy, 2e-4, **counts)
    assert schedule.lr_for_epoch(1) == 2e-4
    # a tenth of the decay, of the cosine's half period
    assert schedule.lr_for_epoch(10 ** 399) == pytest.approx(
        1.8e-4 if policy == "linear" else 1e-4 * (1 + math.cos(math.pi / 10)))


def test_bad_policy_raises():
    with pytest.raises(ValueError, match="lr_policy"):
        LRSchedule("exp", 1e-3, n_epochs=1, n_epochs_decay=1)
    with pytest.raises(ValueError, match="n_epochs_decay"):
        LRSchedule("linear", 1e-3, n_epochs=1, n_epochs_decay=-1)


def test_training_runs_epoch_count_to_n_epochs_plus_decay_like_the_reference():
    from types import SimpleNamespace

    from fastp2p.train.trainer import Trainer
    args = SimpleNamespace(epoch_count=4, n_epochs=5, n_epochs_decay=7)
    trainer = Trainer(args, None, None, None, None, None)
    assert (trainer.progress.epoch, trainer.last_epoch) == (4, 12)
