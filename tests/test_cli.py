"""The fastp2p command runs and explains itself."""
import subprocess
import sys
import tempfile


def _run(*args):
    # cwd outside the checkout, so `python -m` imports the installed package, not the source folder
    return subprocess.run([sys.executable, "-m", "fastp2p", *args], capture_output=True,
                          text=True, timeout=120, cwd=tempfile.gettempdir())


def test_help_lists_the_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "info" in result.stdout and "usage: fastp2p" in result.stdout


def test_info_prints_versions():
    result = _run("info")
    assert result.returncode == 0, result.stderr
    assert "fastp2p 0.1.0" in result.stdout and "torch" in result.stdout
    assert "C++     fastp2p._C" in result.stdout  # built, or unavailable with the reason
