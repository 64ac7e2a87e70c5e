"""The source distribution holds the documents README.md links to (fastp2p/ops/README.md, "how
to add an op or a backend", csrc/README.md, benchmarks' notes): MANIFEST.in took csrc's sources
alone, so in an sdist, and any package built from one, those links were dead. The file list is
the one ``setup.py sdist`` ships (egg_info's SOURCES.txt), made in a copy of the checkout."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").is_file(),
                                reason="needs the source checkout")

# .gitignore's build outputs, and git's folder: an sdist made from a clean clone has none
NOT_SOURCES = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist",
                                     "*.so", "_C_build.json", ".pytest_cache")


def _sdist_files(tmp_path: Path) -> set:
    checkout, egg_base = tmp_path / "checkout", tmp_path / "egg"
    shutil.copytree(ROOT, checkout, ignore=NOT_SOURCES)
    egg_base.mkdir()
    done = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "-e", str(egg_base)],
                          cwd=checkout, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set((egg_base / "fastp2p.egg-info" / "SOURCES.txt").read_text().splitlines())


def _linked_documents(readme: Path) -> set:
    """The checkout's files that ``readme``'s Markdown links point at (not web pages, anchors,
    or the design notes kept beside the checkout, ../shared)."""
    targets = re.findall(r"\]\(([^)#\s]+)", readme.read_text(encoding="utf-8"))
    return {target for target in targets
            if "://" not in target and not target.startswith("../")}


def test_the_sdist_holds_every_document_the_readme_links_to(tmp_path):
    linked = _linked_documents(ROOT / "README.md")
    assert "fastp2p/ops/README.md" in linked    # the test reads links as they are written
    assert not linked - _sdist_files(tmp_path)


def test_the_sdist_holds_csrc_s_readme(tmp_path):
    assert {"csrc/README.md", "csrc/module.cpp"} <= _sdist_files(tmp_path)
