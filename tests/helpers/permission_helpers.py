"""Commands that file permissions bind, as root too: root reads and lists anything (the
capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so a test of an unreadable file runs
its command without them."""
import os
import shutil
import subprocess
import sys

import pytest

# what lets root past file permissions (and change them: CAP_FOWNER)
_BYPASSING = "-dac_override,-dac_read_search,-fowner"


def bound_by_permissions(command: list[str]) -> list[str]:
    """``command`` as is for a user other than root; for root, through ``setpriv`` without
    the capabilities that bypass file permissions. Skips the test as root without setpriv."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("runs as root, whom file permissions do not bind, and there is no setpriv "
                    "(util-linux) to drop the capabilities that bypass them")
    return [setpriv, f"--bounding-set={_BYPASSING}", *command]


def fastp2p_bound_by_permissions(cwd, *args: str) -> subprocess.CompletedProcess:
    """`fastp2p ARGS` run in ``cwd`` (outside the checkout, whose fastp2p/ would shadow the
    installed package) as a process file permissions bind."""
    return subprocess.run(bound_by_permissions([sys.executable, "-m", "fastp2p", *args]),
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def denied():
    """``denied(path, mode)``: chmod ``path`` to ``mode`` for the test, restored afterwards so
    that the test's folder can be removed (by a user other than root too)."""
    changed = []

    def deny(path, mode: int = 0o000):
        changed.append((path, os.stat(path).st_mode & 0o7777))
        os.chmod(path, mode)
    yield deny
    for path, mode in reversed(changed):
        os.chmod(path, mode)
