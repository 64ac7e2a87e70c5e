"""The loss plot's title is the run's name (QA interrupt 4). Under a C locale without UTF-8 mode
(`LC_ALL=C PYTHONUTF8=0`) a `--name né` reaches Python as lone surrogates, which matplotlib
refused with a TypeError: no loss plot at all, a warning quoting half a sentence. A name in
letters the plot's font lacks (CJK under DejaVu Sans) gave one raw matplotlib UserWarning per
letter, with a source line of fastp2p's."""
import random
import warnings

import matplotlib.pyplot as plt
import pytest

from fastp2p.train.loss_log import LOG_FIELDS, LossLog


def _loss_log(tmp_path) -> LossLog:
    rng = random.Random(4)
    log = LossLog(tmp_path / "loss_log.csv")
    for step in (2, 4, 6):
        log.append({**{field: rng.uniform(0.1, 40.0) for field in LOG_FIELDS}, "step": step})
    return log


@pytest.mark.parametrize("name, shown", [
    ("n\udcc3\udca9", "né"),             # UTF-8 bytes decoded as ASCII: their own letters
    ("lat\udce9n", "lat\ufffdn"),         # bytes that are not UTF-8 (Latin-1 'latén')
], ids=["utf8-bytes", "latin1-bytes"])
def test_a_name_of_undecoded_bytes_is_plotted(tmp_path, name, shown):
    log = _loss_log(tmp_path)
    log.plot(tmp_path / "loss.png", f"{name}: losses")
    assert (tmp_path / "loss.png").stat().st_size > 0
    figure = log.figure(f"{name}: losses")
    try:
        assert figure.axes[0].get_title() == f"{shown}: losses"
    finally:
        plt.close(figure)


def test_letters_the_font_lacks_raise_no_warning_of_fastp2ps(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _loss_log(tmp_path).plot(tmp_path / "loss.png", "日本: losses")
        assert [str(warning.message) for warning in caught] == []
        # a caller's own plot keeps matplotlib's warning
        figure = plt.figure()
        figure.suptitle("日本")
        figure.savefig(tmp_path / "own.png")
        plt.close(figure)
    assert any("missing from font" in str(warning.message) for warning in caught)
