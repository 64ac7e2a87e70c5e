"""The lr policies give the reference implementation's (torch.optim.lr_scheduler's) values,
stepped at the end of each epoch (the default) or at its start (--lr_step_at epoch_start)."""
import math

import pytest
import torch

from fastp2p.train.schedulers import LRSchedule
from helpers.reference_schedules import reference_lrs


STEP_AT = pytest.mark.parametrize("step_at", ["epoch_end", "epoch_start"])


@STEP_AT
@pytest.mark.parametrize("epoch_count", [1, 4])
def test_linear_is_the_reference_lambda_rule(epoch_count, step_at):
    n_epochs, n_decay = 5, 7

    def lambda_rule(epoch):  # the reference's networks.get_scheduler, verbatim math
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_decay + 1)
    epochs = n_epochs + n_decay - epoch_count + 1
    expected = reference_lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda_rule), epochs,
                             step_first=step_at == "epoch_start")
    schedule = LRSchedule("linear", 2e-4, n_epochs=n_epochs, n_epochs_decay=n_decay,
                          epoch_count=epoch_count, step_at=step_at)
    got = [schedule.lr_for_epoch(e) for e in range(epoch_count, epoch_count + epochs)]
    assert got == pytest.approx(expected, rel=1e-12)
    # the first decayed epoch: n_epochs + 1 stepped at the end, n_epochs at the start
    first_decayed = n_epochs + 1 - (step_at == "epoch_start") - epoch_count
    assert got[first_decayed - 1] == 2e-4 > got[first_decayed]
    assert (got[-1] == 0) == (step_at == "epoch_start") and got[-1] >= 0


@STEP_AT
def test_step_and_cosine_match_torch(step_at):
    step_first = step_at == "epoch_start"
    step = LRSchedule("step", 2e-4, n_epochs=10, n_epochs_decay=0, lr_decay_iters=3,
                      step_at=step_at)
    expected = reference_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.1), 10,
                             step_first=step_first)
    assert [step.lr_for_epoch(e) for e in range(1, 11)] == pytest.approx(expected)
    cosine = LRSchedule("cosine", 2e-4, n_epochs=10, n_epochs_decay=0, step_at=step_at)
    expected = reference_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10), 11,
                             step_first=step_first)
    assert [cosine.lr_for_epoch(e) for e in range(1, 12)] == pytest.approx(expected, abs=1e-12)


def test_plateau_matches_reduce_lr_on_plateau():
    metrics = [5.0, 4.0, 3.99, 3.98, 3.97, 3.96, 3.95, 3.94, 2.0] + [2.0] * 8
    expected = reference_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, mode="min", factor=0.2, threshold=0.01, patience=5), len(metrics), metrics,
        step_first=False)
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
    with pytest.raises(ValueError, match="step_at"):
        LRSchedule("linear", 1e-3, n_epochs=1, n_epochs_decay=1, step_at="start")


def test_training_runs_epoch_count_to_n_epochs_plus_decay_like_the_reference():
    from types import SimpleNamespace

    from fastp2p.train.trainer import Trainer
    args = SimpleNamespace(epoch_count=4, n_epochs=5, n_epochs_decay=7)
    trainer = Trainer(args, None, None, None, None, None)
    assert (trainer.progress.epoch, trainer.last_epoch) == (4, 12)


@pytest.mark.parametrize("step_at, lrs", [("epoch_end", [2e-4, 1e-4]), ("epoch_start", [1e-4, 0])])
def test_lr_step_at_sets_the_epochs_lrs(tmp_path, step_at, lrs):
    """--lr_step_at epoch_start is the reference's train.py since about 2020: the decay one epoch
    sooner, the last epoch at lr 0."""
    import csv

    from fastp2p.cli import main
    from helpers.train_helpers import train_argv, write_aligned_dataset
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    argv = train_argv(data, tmp_path / "ckpt", "--n_epochs", "1", "--n_epochs_decay", "1",
                      "--lr_step_at", step_at, "--no_html")
    assert main(argv) == 0
    with open(tmp_path / "ckpt" / "tiny" / "loss_log.csv", newline="") as handle:
        logged = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert logged == pytest.approx([lr for lr in lrs for _ in range(2)], abs=1e-12)  # 2 steps
