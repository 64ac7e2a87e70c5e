"""The benchmark's end-to-end section: `fastp2p train` on a tiny packed set, on the CPU."""
import pytest

from fastp2p.bench.end_to_end import (EndToEndSettings, end_to_end_job, finalize_end_to_end_rows,
                                      frequencies)
from fastp2p.bench.networks import QUICK_CONFIG
from fastp2p.bench.render import _end_to_end_lines

STAGES = ("data", "step", "log", "sample", "checkpoint")
STEPS = 4


def _run(batch_size, processes):
    settings = EndToEndSettings(QUICK_CONFIG, (batch_size,), STEPS, 1, "cpu", (processes,))
    job = end_to_end_job(batch_size, processes, settings)
    (row,) = job.run()
    return {**job.identity, "status": "ok", **row}


@pytest.fixture(scope="module")
def one_process():
    return _run(2, 1)


def test_row_times_the_steps_after_the_warmup_and_each_stage(one_process):
    row = one_process
    assert row["steps"] == STEPS and row["warmup"] == 1 and row["processes"] == 1
    assert row["images_per_s"] > 0 and row["per_rank_images_per_s"] == [row["images_per_s"]]
    assert row["images_per_s"] == pytest.approx(2 * STEPS / row["window_s"])
    assert row["step_calls"] == STEPS
    every = frequencies(STEPS, 2)
    assert row["log_every"] == every["log_every"]
    # each of logging, samples and checkpoints happened inside the timed window
    for stage in ("log", "sample", "checkpoint"):
        assert row[f"{stage}_calls"] >= 1 and row[f"{stage}_ms_per_call"] > 0
    assert row["data_calls"] >= STEPS
    assert 0 < sum(row[f"{stage}_share"] for stage in STAGES) <= 1.0 + 1e-6
    for stage in STAGES:
        assert row[f"{stage}_s"] == pytest.approx(row[f"{stage}_share"] * row["window_s"])


def test_ratio_to_the_step_only_figure_of_the_training_section(one_process):
    training = [{"peer": "reference", "batch_size": 2, "status": "ok", "images_per_s": 1.0},
                {"peer": "fastp2p", "batch_size": 2, "status": "ok", "images_per_s": 50.0}]
    (row,) = finalize_end_to_end_rows([dict(one_process)], training)
    assert row["step_only_images_per_s"] == 50.0
    assert row["ratio_to_step_only"] == pytest.approx(one_process["images_per_s"] / 50.0)
    (alone,) = finalize_end_to_end_rows([dict(one_process)], [])
    assert alone["ratio_to_step_only"] is None
    table = "\n".join(_end_to_end_lines([row]))
    assert "## End to end" in table and "waiting for data" in table and "| 2 | 1 | cpu" in table


def test_two_processes_report_each_rank_and_the_total():
    row = _run(1, 2)
    per_rank = row["per_rank_images_per_s"]
    assert len(per_rank) == 2 and min(per_rank) > 0
    assert row["images_per_s"] == pytest.approx(sum(per_rank))
    assert row["steps"] == STEPS
