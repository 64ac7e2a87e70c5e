"""fastp2p pack's bar on a terminal shows every pair its workers count: it ended at 98% when
the shared counter was read twice per update, workers adding to it between the two reads."""
from fastp2p.data import pack


class _CountingWhileRead:
    """A shared counter that workers add a pair to each time it is read."""

    def __init__(self):
        self._value = 0

    @property
    def value(self):
        self._value += 1
        return self._value


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, pairs):
        self.n += pairs


def test_the_bar_adds_up_to_the_last_count_it_reports():
    counter, bar, reported = _CountingWhileRead(), _Bar(), 0
    for _ in range(5):
        reported = pack._show_counted(bar, counter, reported)
    assert bar.n == reported == 5
