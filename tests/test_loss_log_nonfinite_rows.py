"""Rows of ``loss_log.csv`` holding nan or inf, which fastp2p never writes (a NaN loss stops
training before its row), are left out on resume like rows that do not parse, with the same one
line: they were kept, and set the loss plot's scale (matplotlib's overflow warning)."""
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
