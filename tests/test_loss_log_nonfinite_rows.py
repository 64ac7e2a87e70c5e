"""Rows of ``loss_log.csv`` holding nan or inf, which fastp2p never writes (a NaN loss stops
training before its row), are left out on resume like rows that do not parse, with the same one
line: they were kept, and set the loss plot's scale (matplotlib's overflow warning). So are rows
whose epoch, step or images is negative or past int64, and an overlong line, which is not read
whole."""
import tracemalloc

import pytest

from fastp2p.train.loss_log import LOG_FIELDS, LossLog

GOOD = "1,2,2,0.0002,0.5,30.0,0.6,0.7,12.5"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_row_with_a_nonfinite_value_is_left_out(tmp_path, value):
    log = tmp_path / "loss_log.csv"
    log.write_text(",".join(LOG_FIELDS) + "\n" + GOOD + "\n"
                   + f"1,3,3,0.0002,{value},30.0,0.6,0.7,12.5\n")
    said = []
    rows = LossLog(log, resume_step=100, say=said.append).rows
    assert [row["step"] for row in rows] == [2]
    assert len(said) == 1 and "1 damaged row(s) left out" in said[0] and "NaN or Inf" in said[0]


@pytest.mark.parametrize("counts", ["1,-1,2", "1,-1000000000000000000000000000000,2",
                                    "1,9223372036854775808,2", "-1,3,3", "1,3,-3"])
def test_a_row_with_a_count_out_of_range_is_left_out_and_the_plot_is_drawn(tmp_path, counts):
    """A step of -10**30 was kept (it is below the resumed step), and every loss plot of the
    resumed run failed (numpy's OverflowError), a warning once and loss.png never again."""
    log = tmp_path / "loss_log.csv"
    log.write_text(",".join(LOG_FIELDS) + "\n" + GOOD + "\n"
                   + f"{counts},0.0002,0.5,30.0,0.6,0.7,12.5\n")
    said = []
    loss_log = LossLog(log, resume_step=100, say=said.append)
    assert [row["step"] for row in loss_log.rows] == [2]
    assert len(said) == 1 and "1 damaged row(s) left out" in said[0], said
    loss_log.plot(tmp_path / "loss.png", "tiny")
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_an_overlong_line_is_a_damaged_row_not_read_whole(tmp_path):
    """A sparse log (64 MiB of NUL bytes without a newline between two rows) was read whole:
    a sparse 3 GB one was a MemoryError traceback."""
    log = tmp_path / "loss_log.csv"
    with open(log, "w") as handle:
        handle.write(",".join(LOG_FIELDS) + "\n" + GOOD + "\n")
        handle.seek(handle.tell() + (64 << 20))   # a hole: NUL bytes, no disk
        handle.write("\n" + GOOD.replace(",2,2,", ",3,3,") + "\n")
    said = []
    tracemalloc.start()
    try:
        rows = LossLog(log, resume_step=100, say=said.append).rows
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [row["step"] for row in rows] == [2, 3]
    assert len(said) == 1 and "1 damaged row(s) left out" in said[0], said
    assert peak < (8 << 20), peak
