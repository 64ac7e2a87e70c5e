"""Rows of ``loss_log.csv`` holding nan or inf, which fastp2p never writes (a NaN loss stops
training before its row), are left out on resume like rows that do not parse, with the same one
line: they were kept, and set the loss plot's scale (matplotlib's overflow warning). An
overlong line is such a row too, and is not read whole."""
import tracemalloc

import pytest

from fastp2p.train.reports import LOG_FIELDS, LossLog

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
