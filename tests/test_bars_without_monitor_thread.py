"""At a limit on processes and threads (a cgroup's pids.max), `fastp2p train` printed tqdm's
three-line "TqdmMonitorWarning: tqdm:disabling monitor support ... can't start new thread" before
its own one-line error: every tqdm bar, even one disabled off a terminal (train's image-header
scan), starts tqdm's monitor thread. fastp2p's bars start none, and draw as before."""
import subprocess
import sys
import textwrap

import pytest

# Every thread start refused, as at the limit; then one bar made, drawn and closed.
_REFUSED_THREADS = """
import io, sys, threading

def refuse(thread):
    raise RuntimeError("can't start new thread")

threading.Thread.start = refuse
"""

_BARS = {
    "stderr_bar, off a terminal": """
        from fastp2p.terminal import stderr_bar
        for _ in stderr_bar(range(3), disable=None):
            pass
        """,
    "train's bar on a terminal": """
        from fastp2p.train.progress import TerminalProgress
        drawn = io.StringIO()
        bar = TerminalProgress(drawn, total=3, desc="epoch 1/1", unit="step")
        bar.update(3)
        bar.close()
        print(drawn.getvalue())
        """,
}


def _run(bar: str, folder) -> subprocess.CompletedProcess:
    """``bar`` drawn in a new process whose threads cannot start, run from ``folder`` (not the
    checkout, whose uninstalled source fastp2p refuses: the installed package is tested)."""
    script = _REFUSED_THREADS + textwrap.dedent(_BARS[bar])
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=folder)


@pytest.mark.parametrize("bar", _BARS)
def test_no_bar_warns_of_a_monitor_thread_it_could_not_start(bar, tmp_path):
    done = _run(bar, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_train_bar_still_draws_without_the_monitor(tmp_path):
    drawn = _run("train's bar on a terminal", tmp_path).stdout
    assert "epoch 1/1: 100%" in drawn and "3/3" in drawn


def test_other_tqdm_bars_of_the_process_keep_their_monitor(monkeypatch):
    """fastp2p's bars are a subclass's: setting tqdm's own monitor_interval would take the
    monitor from the other bars of the process (a notebook's own), which redraws a stalled
    one."""
    from tqdm import tqdm

    from fastp2p import terminal
    monkeypatch.setattr(tqdm, "monitor_interval", 10)
    terminal._bar_class.cache_clear()   # the class is made (and tqdm looked at) once
    bar = terminal.new_bar(range(1), disable=True)
    bar.close()
    assert (type(bar).monitor_interval, tqdm.monitor_interval) == (0, 10)
