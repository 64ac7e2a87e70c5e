"""The dotted names that the bench package's and `fastp2p info`'s docstrings and comments give
in double backquotes (``fastp2p.x.y``) exist, and a class or function is named where it is
defined, not where it is imported: stops.py named ``fastp2p.train.trainer.StopRequests``
after the class had moved to fastp2p.train.stop_requests (trainer only imports it)."""
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastp2p"
SOURCES = sorted((PACKAGE / "bench").glob("*.py")) + [PACKAGE / "info.py"]
NAME = re.compile(r"``(fastp2p(?:\.\w+)+)(?:\(\))?``")


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or an object of one defined there (or of the public
    face, ``fastp2p.UNet``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        named_in = ".".join(parts[:-1])
        defined_in = getattr(target, "__module__", None) if callable(target) else None
        return defined_in in (None, named_in) or named_in == "fastp2p"
    return False


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_every_dotted_name_resolves(source):
    names = sorted(set(NAME.findall(source.read_text(encoding="utf-8"))))
    assert [name for name in names if not _resolves(name)] == []
