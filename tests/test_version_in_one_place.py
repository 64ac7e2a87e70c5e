"""The version is written once, as fastp2p/__init__.py's ``__version__``: setup.py reads it from
that file's text (a build has no torch to import the package with). setup.py wrote "0.1.0" of
its own, so a release that changed one of the two installed a package whose metadata
(``pip show``, ``fastp2p --version``) and ``fastp2p.__version__`` disagreed."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastp2p

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").is_file(),
                                reason="needs the source checkout")


def _setup_version(checkout: Path) -> str:
    """What ``python setup.py --version`` in ``checkout`` says (its last line)."""
    result = subprocess.run([sys.executable, "setup.py", "--version"], cwd=checkout,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1]


def test_setup_py_takes_the_version_from_the_package(tmp_path):
    shutil.copy(ROOT / "setup.py", tmp_path)
    (tmp_path / "README.md").write_text("fastp2p\n")
    (tmp_path / "fastp2p").mkdir()
    (tmp_path / "fastp2p" / "__init__.py").write_text('"""Stand-in."""\n__version__ = "9.8.7"\n')
    assert _setup_version(tmp_path) == "9.8.7"


def test_the_checkouts_setup_py_and_package_agree():
    assert _setup_version(ROOT) == fastp2p.__version__
