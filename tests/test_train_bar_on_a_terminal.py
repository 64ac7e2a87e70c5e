"""The train bar on a terminal (QA r2).

- On an 80-column terminal the bar cut off the losses: its postfix carried the images/s, the
  time left and the four losses (~110 characters), and tqdm cuts a bar at the terminal's width,
  so G_L1, D_real and D_fake were never shown (at 40 columns no loss was). The losses of each
  read are now a line above the bar, whole at any width.
- A stop (SIGINT, SIGTERM) left a stale bar as the screen's last line: the stop line, written
  through tqdm.write, redrew the open bar below it. The bar is now closed first.
"""
import signal
import sys

import pytest
from tqdm import tqdm

from fastp2p.train.progress import progress_bar
from helpers.pseudo_terminals import pseudo_terminal
from helpers.train_helpers import random_batches, tiny_networks
from helpers.trainer_stand_ins import ListLoader, stand_in_trainer

LOSSES = ("G_GAN", "G_L1", "D_real", "D_fake")


def _fit_on_terminal(tmp_path, monkeypatch, columns, loader) -> tuple[int, str]:
    """(fit's exit code, what the terminal showed) for a one-epoch run whose bar, progress and
    stop lines go to a terminal of ``columns``, as `fastp2p train`'s do."""
    with pseudo_terminal(columns) as (stream, shown):
        monkeypatch.setattr(sys, "stderr", stream)  # the bar's stream, and the lines' (stdout)
        monkeypatch.setattr(sys, "stdout", stream)
        trainer, _ = stand_in_trainer(tmp_path, *tiny_networks(), n_epochs=1, n_epochs_decay=0)
        trainer.say = trainer.say_error = tqdm.write   # the CLI's messengers write so
        code = trainer.fit(loader, progress_bar=lambda **kw: progress_bar(unit="step", **kw))
        del trainer
        return code, shown()


@pytest.mark.parametrize("columns", [80, 40])
def test_every_loss_is_shown_with_its_value_on_a_narrow_terminal(monkeypatch, tmp_path,
                                                                   columns):
    code, text = _fit_on_terminal(tmp_path, monkeypatch, columns, ListLoader(random_batches(2)))
    assert code == 0
    for name in LOSSES:
        assert f" {name} " in text, (name, text)
    read_lines = [line for line in text.replace("\r", "\n").splitlines() if "D_fake" in line]
    assert read_lines[-1].startswith("epoch 1/1: step 2/2, G_GAN "), text


def test_a_stop_line_is_the_last_thing_shown(monkeypatch, tmp_path):
    code, text = _fit_on_terminal(tmp_path, monkeypatch, 80,
                                  ListLoader(random_batches(3), stop_in_step=1))
    assert code == 128 + signal.SIGINT
    after_stop = text.split("SIGINT received: saved ")[-1]
    assert "%|" not in after_stop, text   # no bar redrawn below it
