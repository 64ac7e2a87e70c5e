"""No line of the project's Python files is longer than the 100 columns STYLE.md asks for (59
were), and one that is is named file:line. The files are the .py files git tracks, or, where
git or the repository is missing (an unpacked source archive), those of the folders git tracks
them in."""
import shutil
import subprocess
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
MAX_COLUMNS = 100
PYTHON_FOLDERS = ("fastp2p", "kernels", "benchmarks", "tests")


def _tracked_python_files(cwd):
    """The .py files git tracks in the checkout, or None without git or a repository there."""
    if shutil.which("git") is None:
        return None
    listed = subprocess.run(["git", "-C", str(CHECKOUT), "ls-files", "-z", "--", "*.py"],
                            cwd=cwd, capture_output=True)
    if listed.returncode != 0:
        return None
    # a checkout unpacked inside some other repository lists nothing: walk it instead
    files = [CHECKOUT / name for name in listed.stdout.decode().split("\0") if name]
    return [path for path in files if path.is_file()] or None


def _walked_python_files():
    return [CHECKOUT / "setup.py", *(path for folder in PYTHON_FOLDERS
                                     for path in sorted((CHECKOUT / folder).rglob("*.py")))]


def _long_lines(files):
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if len(line) > MAX_COLUMNS:
                yield f"{path.relative_to(CHECKOUT)}:{number}: {len(line)} columns"


def test_no_python_line_is_longer_than_100_columns(tmp_path):
    long_lines = list(_long_lines(_tracked_python_files(tmp_path) or _walked_python_files()))
    if long_lines:
        # pytest.fail, not assert: pytest would cut a long assertion message after 8 lines
        pytest.fail(f"{len(long_lines)} lines longer than {MAX_COLUMNS} columns:\n"
                    + "\n".join(long_lines), pytrace=False)


def test_the_walk_without_git_finds_every_tracked_file(tmp_path):
    tracked = _tracked_python_files(tmp_path)
    if tracked is None:
        pytest.skip("no git repository to compare the walk with")
    assert sorted(set(tracked) - set(_walked_python_files())) == []
