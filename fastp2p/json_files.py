"""Reading JSON from disk: every file fastp2p reads back (pack indexes and states, checkpoint
manifests, benchmark results, synthetic-set records, the committed choice tables and build
information) goes through ``read_json``.

``json.loads`` raises RecursionError, not ValueError, on input nested deeper than the
interpreter's recursion limit (``'[' * 200000``): it passed every ``except (OSError,
ValueError)`` that turns a damaged file into a one-line error. Here it is a ValueError like any
other text that is not JSON.
"""
import json

from fastp2p.file_reads import read_text


def parse_json(text: str):
    """``json.loads(text)``; raises ValueError for anything that is not JSON, too deep a
    nesting included."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not JSON fastp2p reads: nested too deeply") from None


def read_json(path, max_bytes: int | None = None):
    """The parsed content of the JSON file ``path``. Raises OSError (cannot be read) or
    ValueError (not UTF-8, not JSON, nested too deeply, not a regular file, or larger than
    ``max_bytes``: ``fastp2p.file_reads.FileTooLarge``, before it is read)."""
    return parse_json(read_text(path, max_bytes, encoding="utf-8"))


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: a lone surrogate does not (JSON's ``"\\udcff"``
    escape, or a byte that was no UTF-8 read back with surrogateescape), and writing or
    drawing it fails later, far from the file it came from."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
