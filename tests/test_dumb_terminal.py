"""A terminal that declares itself dumb (TERM=dumb: Emacs' shell and compile buffers, some CI
consoles) got tqdm's animated bars, whose carriage returns it shows as characters (QA r2): it
now gets the plain lines a pipe or a log file gets, from every command."""
import io

from fastp2p.terminal import is_terminal, stderr_bar
from fastp2p.train.progress import PlainProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_train_prints_plain_lines_on_a_dumb_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(progress_bar(stream=_Terminal(), total=3), PlainProgress)
    assert not is_terminal(_Terminal())     # pack's bars, and the worker pool's stop line
    monkeypatch.setenv("TERM", "xterm")
    assert is_terminal(_Terminal())


def test_the_other_bars_draw_nothing_on_a_dumb_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    shown = _Terminal()
    monkeypatch.setattr("sys.stderr", shown)
    for _ in stderr_bar(range(3), desc="checking images"):
        pass
    assert shown.getvalue() == ""
