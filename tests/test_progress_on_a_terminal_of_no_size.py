"""A terminal that reports a size of 0 x 0 (a pseudo-terminal whose size nobody set: `script`,
some containers' consoles) got no progress at all from `fastp2p train`: tqdm draws nothing at 0
columns or rows, neither the bar nor the losses beside it (QA r55). The bar is now 80 x 24
there."""
import fcntl
import io
import struct
import sys
import termios

import pytest

from fastp2p.terminal import FALLBACK_SIZE, bar_size, stderr_bar
from fastp2p.train.progress import progress_bar
from helpers.pseudo_terminals import pseudo_terminal


@pytest.fixture
def terminal():
    """(the terminal's side a program writes to, as a file; a function reading what it shows)"""
    with pseudo_terminal(columns=0, rows=0) as opened:
        yield opened


def _set_size(stream, rows: int, columns: int) -> None:
    fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


@pytest.mark.parametrize("rows, columns", [(0, 0), (24, 0), (0, 120)])
def test_the_bar_and_losses_are_drawn_on_a_terminal_of_no_size(terminal, monkeypatch, rows,
                                                               columns):
    stream, shown = terminal
    _set_size(stream, rows, columns)
    monkeypatch.setattr(sys, "stderr", stream)  # tqdm asks the size of stderr and stdout only
    bar = progress_bar(total=4, desc="epoch 1/1", unit="step")
    bar.update(2)
    bar.show_read({"img/s": "3.0"}, {})
    bar.close()
    text = shown()
    assert "img/s=3.0" in text and "2/4" in text, repr(text)


def test_the_other_commands_bars_are_drawn_on_a_terminal_of_no_size(terminal, monkeypatch):
    """pack's, the image scan's and the synthetic dataset's bars, on stderr (stderr_bar)."""
    stream, shown = terminal
    _set_size(stream, 0, 0)
    monkeypatch.setattr(sys, "stderr", stream)
    bar = stderr_bar(total=8, desc="pack train", unit="pair")
    bar.update(3)
    bar.close()
    text = shown()
    assert "pack train" in text and "3/8" in text, repr(text)


def test_a_terminal_that_reports_its_size_keeps_tqdms_own_reading(terminal):
    stream, _ = terminal
    _set_size(stream, 30, 120)
    assert bar_size(stream) == {}
    _set_size(stream, 0, 0)
    assert bar_size(stream) == FALLBACK_SIZE


def test_a_stream_without_a_terminal_has_no_size_of_its_own():
    assert bar_size(io.StringIO()) == {}
