"""A command started with stderr closed (``2>&-``: a cron job, a daemon, some CI launchers) has
sys.stderr None. ``fastp2p test``'s bar and ``--skip-bad``'s (tqdm's ``disable=None``) were not
disabled there and their first frame raised AttributeError: the command exited 1 having done no
work (QA interrupt 1). Without a stderr there is no bar, and the work is done."""
import sys

from fastp2p.terminal import stderr_bar


def test_no_bar_and_every_item_without_a_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    items = [3, 1, 4, 1, 5]
    assert list(stderr_bar(items, total=len(items), desc="translating", disable=None)) == items
    bar = stderr_bar(total=4, desc="pack train", unit="pair")
    bar.update(4)
    bar.close()
