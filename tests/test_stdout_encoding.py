"""A stdout whose encoding cannot show a path (``PYTHONIOENCODING=ascii`` and ``pé``) raised
UnicodeEncodeError wherever fastp2p printed one: pack, pack --verify and test exited 1 with a
traceback after their work, train with an error before its first step (QA interrupt 2). Such a
text is now shown with backslash escapes, as Python's stderr shows it, and the exit code is the
command's own."""
import io

import pytest

from fastp2p.cli import main
from fastp2p.train.stdout_reader import GuardedStdout
from helpers.train_helpers import train_argv, write_aligned_dataset


def _ascii_stdout(monkeypatch) -> io.TextIOWrapper:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii", write_through=True)
    monkeypatch.setattr("sys.stdout", stream)
    return stream


def _shown(stream: io.TextIOWrapper) -> str:
    return stream.buffer.getvalue().decode("ascii")


@pytest.mark.parametrize("encoding, text, shown", [
    ("ascii", "pé/train: 12 pairs 日本\n", "p\\xe9/train: 12 pairs \\u65e5\\u672c\n"),
    ("utf-8", "n\udcc3\udca9/web\n", "n\\udcc3\\udca9/web\n"),   # a path not in UTF-8
    # 8-bit codecs, whose error names 'charmap': '½' and '¤' are in Latin-1, not in these
    ("iso8859-15", "d½\n", "d\\xbd\n"),
    ("cp437", "price ¤5 €\n", "price \\xa45 \\u20ac\n"),
], ids=["ascii", "utf-8-undecodable-path", "iso8859-15", "cp437"])
def test_what_the_encoding_lacks_is_escaped(encoding, text, shown):
    stream = io.TextIOWrapper(io.BytesIO(), encoding=encoding, write_through=True)
    print(text, end="", file=GuardedStdout(stream))
    assert stream.buffer.getvalue().decode(encoding) == shown


def test_pack_and_its_verify_with_a_path_stdout_cannot_encode(monkeypatch, tmp_path):
    stream = _ascii_stdout(monkeypatch)
    packed = tmp_path / "pé"
    assert main(["pack", "--synthetic", "3", str(tmp_path / "dé"), str(packed),
                 "--load_size", "32", "--workers", "1"]) == 0
    assert main(["pack", "--verify", str(packed)]) == 0
    assert "p\\xe9/train: 3 pairs of 32x64 in" in _shown(stream)


def test_train_with_a_name_stdout_cannot_encode(monkeypatch, tmp_path):
    data = write_aligned_dataset(tmp_path / "data", pairs=2, phases=("train",))
    stream = _ascii_stdout(monkeypatch)
    assert main(train_argv(data, tmp_path / "ck", "--name", "ré", "--n_epochs_decay", "0",
                           "--no_html")) == 0
    assert "training r\\xe9" in _shown(stream)
