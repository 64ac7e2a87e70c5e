"""The words of the progress and end lines (QA r2): the plain progress line's time had no label
("step 24/26, 101 s, img/s 7.6"), and a count of 1 took a plural ("over 1 steps after the
first 1", bench's "1 timed steps")."""
import itertools

from fastp2p.bench.render import markdown
from fastp2p.train import progress, stage_times
from fastp2p.train.progress import PlainProgress
from fastp2p.train.stage_times import StageTimes


def test_the_plain_lines_time_says_what_it_is(monkeypatch):
    now = [10.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    lines = []
    bar = PlainProgress(total=26, initial=23, desc="epoch 2/24", unit="step",
                        print_line=lines.append)
    now[0] += 101.2
    bar.update(1)
    bar.show_read({"img/s": "7.6", "left": "40m25s"}, {"G_L1": "0.250"})
    assert lines == ["epoch 2/24: step 24/26, 101 s in this epoch, img/s 7.6 left 40m25s "
                     "G_L1 0.250"]


def test_one_step_after_the_first_is_singular(monkeypatch):
    # a clock one second later at each reading: every stage takes time
    monkeypatch.setattr(stage_times.time, "perf_counter", itertools.count().__next__)
    times = StageTimes(skip_steps=1)
    for _ in range(2):
        with times.stage("step"):
            pass
        times.step_done(4)
    times.epoch_end()
    assert " images/s over 1 step after the first 1; " in times.describe()


def test_one_timed_step_of_the_bench_is_singular():
    results = {"mode": "quick", "complete": True, "training": [],
               "environment": {"device": "cpu", "date_utc": "2026-12-06 10:00",
                               "date": "20261206", "commit": "abc1234", "python": "3.11.7",
                               "torch": "2.13.0"},
               "config": {"network_description": "unet_64", "steps": 1, "warmup": 1}}
    assert "unet_64; 1 timed step after 1 warm-up per peer" in markdown(results)
