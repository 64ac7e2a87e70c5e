"""StageTimes: the steady-state window and what falls inside it, on a fake clock."""
import pytest

from fastp2p.train import stage_times
from fastp2p.train.stage_times import StageTimes


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(stage_times.time, "perf_counter", fake)
    return fake


def _step(times, clock, *, data=0.5, step=1.0, images=4):
    with times.stage("data"):
        clock.advance(data)
    with times.stage("step"):
        clock.advance(step)
    times.step_done(images)


def test_window_starts_after_the_skipped_steps_and_ends_at_the_epoch_end(clock):
    syncs = []
    times = StageTimes(skip_steps=2, sync=lambda: syncs.append(clock.now))
    _step(times, clock, data=9.0, step=9.0)         # warm-up: compilation, capture
    assert times.summary() == {}
    _step(times, clock, data=9.0, step=9.0)         # its end opens the window
    assert syncs == [clock.now]
    for _ in range(3):
        _step(times, clock)
        with times.stage("log"):
            clock.advance(0.25)
    with times.stage("checkpoint"):
        clock.advance(2.0)
    clock.advance(0.5)                              # device work still in flight
    times.epoch_end()
    assert len(syncs) == 2
    with times.stage("checkpoint"):                 # the final save: after the window
        clock.advance(100.0)
    figures = times.summary()
    assert figures["window_s"] == pytest.approx(3 * 1.75 + 2.0 + 0.5)
    assert figures["window_steps"] == 3 and figures["images"] == 12
    assert figures["images_per_s"] == pytest.approx(12 / figures["window_s"])
    assert figures["data_s"] == pytest.approx(1.5) and figures["data_calls"] == 3
    assert figures["step_s"] == pytest.approx(3.0) and figures["log_calls"] == 3
    assert figures["checkpoint_s"] == pytest.approx(2.0) and figures["checkpoint_calls"] == 1
    assert figures["sample_calls"] == 0 and figures["sample_share"] == 0
    assert "images/s over 3 steps after the first 2" in times.describe()


def test_the_next_epoch_extends_the_window(clock):
    times = StageTimes(skip_steps=1)
    _step(times, clock)
    _step(times, clock)
    times.epoch_end()
    with times.stage("checkpoint"):                 # between epochs: inside once steps follow
        clock.advance(3.0)
    _step(times, clock)
    times.epoch_end()
    figures = times.summary()
    assert figures["window_steps"] == 2 and figures["checkpoint_s"] == pytest.approx(3.0)
    assert figures["window_s"] == pytest.approx(1.5 + 3.0 + 1.5)


def test_waiting_times_each_next_batch(clock):
    times = StageTimes(skip_steps=1)
    times.step_done(1)

    def slow():
        for item in range(3):
            clock.advance(0.5)
            yield item
        clock.advance(0.25)
    assert list(times.waiting(slow())) == [0, 1, 2]
    times.step_done(1)   # a step inside the window: figures to report
    times.epoch_end()
    assert times.summary()["data_s"] == pytest.approx(1.75)
    assert times.summary()["data_calls"] == 4       # the last wait finds the epoch's end
    with pytest.raises(ValueError, match="skip_steps must be >= 1"):
        StageTimes(skip_steps=0)


def test_a_run_no_longer_than_the_skipped_steps_has_no_figures(clock):
    """One step, then the epoch end (a 4-pair split at batch 4): the window opened and closed
    around no step; train printed "0.0 images/s over 0 steps after the first 1"."""
    times = StageTimes(skip_steps=1)
    _step(times, clock)
    clock.advance(0.5)
    times.epoch_end()
    assert times.summary() == {}
    assert times.describe() == ""
