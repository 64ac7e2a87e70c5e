"""What the docs cite exists: a test file a source file names as its check, and every public
name of fastp2p.nn in the README (tests/test_dropout_rng.py was cited after it moved to
tests/norm_act/; fastp2p.nn.GraphedModule was exported and never named)."""
import re
from pathlib import Path

import fastp2p.nn

CHECKOUT = Path(__file__).resolve().parents[1]
CITED_TEST = re.compile(r"\btests/[\w/]+\.py\b")


def _cited_tests():
    for path in [*(CHECKOUT / "fastp2p").rglob("*.py"), *(CHECKOUT / "kernels").rglob("*.py")]:
        for cited in CITED_TEST.findall(path.read_text()):
            yield str(path.relative_to(CHECKOUT)), cited


def test_every_test_file_cited_in_the_source_exists():
    missing = [(source, cited) for source, cited in _cited_tests()
               if not (CHECKOUT / cited).is_file()]
    assert not missing


def test_the_readme_names_every_export_of_fastp2p_nn():
    readme = (CHECKOUT / "README.md").read_text()
    assert [name for name in fastp2p.nn.__all__ if name not in readme] == []
