"""The README says what each column of loss_log.csv holds, in the file's order (QA: it named
the file a dozen times but none of its columns, nor that G_L1 is --lambda_L1 times the L1
that `fastp2p test` reports)."""
from pathlib import Path

import pytest

from fastp2p.train.loss_log import LOG_FIELDS

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not README.is_file(), reason="needs the source checkout")
def test_the_readme_describes_every_loss_log_column_in_order():
    text = " ".join(README.read_text(encoding="utf-8").split())
    start = text.index("`loss_log.csv` has a header line")
    described = text[start:text.index("It has no time column.", start)]
    places = [described.index(f"`{field}`") for field in LOG_FIELDS]
    assert places == sorted(places), described
    assert "`G_L1` `--lambda_L1` times the mean |fake_B - real_B|" in described
