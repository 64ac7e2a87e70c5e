"""On an 80-column terminal the train bar cut off the losses: its postfix carried the images/s,
the time left and the four losses (~110 characters), and tqdm cuts a bar at the terminal's
width, so G_L1, D_real and D_fake were never shown (at 40 columns no loss was; QA r2). The
losses of each read are now a line above the bar, whole at any width."""
import fcntl
import os
import pty
import struct
import sys
import termios

import pytest

from fastp2p.train.progress import progress_bar
from helpers.train_helpers import random_batches, tiny_networks
from helpers.trainer_stand_ins import ListLoader, stand_in_trainer

LOSSES = ("G_GAN", "G_L1", "D_real", "D_fake")


@pytest.fixture
def terminal():
    """(the terminal's side a program writes to, as a file; a function reading what it shows)"""
    try:
        master, slave = pty.openpty()
    except OSError as error:
        pytest.skip(f"no pseudo-terminal on this machine ({error})")
    stream = os.fdopen(slave, "w", buffering=1)

    def shown() -> str:
        stream.flush()
        os.set_blocking(master, False)
        text = b""
        while True:
            try:
                text += os.read(master, 65536)
            except BlockingIOError:
                return text.decode(errors="replace")
    yield stream, shown
    stream.close()
    os.close(master)


@pytest.mark.parametrize("columns", [80, 40])
def test_every_loss_is_shown_with_its_value_on_a_narrow_terminal(terminal, monkeypatch,
                                                                   tmp_path, columns):
    stream, shown = terminal
    fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    monkeypatch.setattr(sys, "stderr", stream)  # the bar's stream, and the lines' (stdout)
    monkeypatch.setattr(sys, "stdout", stream)
    trainer, _ = stand_in_trainer(tmp_path, *tiny_networks(), n_epochs=1, n_epochs_decay=0)
    assert trainer.fit(ListLoader(random_batches(2)),
                       progress_bar=lambda **kw: progress_bar(unit="step", **kw)) == 0
    text = shown()
    for name in LOSSES:
        assert f" {name} " in text, (name, text)
    read_lines = [line for line in text.replace("\r", "\n").splitlines() if "D_fake" in line]
    assert read_lines[-1].startswith("epoch 1/1: step 2/2, G_GAN "), text
