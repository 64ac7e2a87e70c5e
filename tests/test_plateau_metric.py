"""The plateau policy's metric is the epoch's mean generator loss over its steps, whatever
--log-every groups them into; and its cuts stop at ReduceLROnPlateau's eps (1e-8)."""
import pytest
import torch

from fastp2p.cli import main
from fastp2p.train.schedulers import LRSchedule
from helpers.train_helpers import train_argv, write_aligned_dataset

_OBSERVE = LRSchedule.observe


def _observed_metrics(tmp_path, monkeypatch, data, log_every):
    seen = []

    def recording(self, metric):
        seen.append(metric)
        _OBSERVE(self, metric)
    monkeypatch.setattr(LRSchedule, "observe", recording)
    argv = train_argv(data, tmp_path / f"log{log_every}", "--lr_policy", "plateau", "--no_html",
                      "--n_epochs", "2", "--n_epochs_decay", "0", "--seed", "0")
    argv[argv.index("--log-every") + 1] = str(log_every)
    assert main(argv) == 0
    return seen


def test_log_every_does_not_change_the_plateau_metric(tmp_path, monkeypatch):
    data = write_aligned_dataset(tmp_path / "data")   # 4 pairs: 4 steps per epoch
    per_step = _observed_metrics(tmp_path, monkeypatch, data, 1)
    grouped = _observed_metrics(tmp_path, monkeypatch, data, 3)  # reads of 3 steps, then 1
    assert len(per_step) == 2
    assert grouped == pytest.approx(per_step, rel=1e-6)


def test_plateau_cuts_stop_at_reduce_lr_on_plateaus_eps():
    epochs = 80
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    schedule = LRSchedule("plateau", 2e-4, n_epochs=1, n_epochs_decay=0)
    expected, got = [], []
    for epoch in range(1, epochs + 1):
        expected.append(optimizer.param_groups[0]["lr"])
        got.append(schedule.lr_for_epoch(epoch))
        optimizer.step()
        scheduler.step(1.0)
        schedule.observe(1.0)
    assert min(expected) > 1e-9        # torch stopped cutting
    assert got == pytest.approx(expected, rel=1e-9, abs=0)
