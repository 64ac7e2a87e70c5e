"""A Ctrl-C during torch's import, in `fastp2p train` or `fastp2p test`'s first second: raised
inside the import (C++ calling back into Python), it aborted the process (SIGABRT from
pybind11's error_already_set), was lost (the command ran to its end), or left numpy.linalg half
imported (a RecursionError later). ``import_torch`` now finishes the import, then raises it."""
import subprocess
import sys

import pytest

# Ctrl-C arriving in the middle of torch._dynamo's import, as a real one may
SCRIPT = """
import importlib.abc, signal, sys
class CtrlCInside(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch._dynamo.utils":
            signal.raise_signal(signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlCInside())
from fastp2p.ctrl_c_deferred import import_torch
try:
    import_torch()
except KeyboardInterrupt:
    print("interrupted;", "torch._dynamo.utils" in sys.modules, "torch._dynamo" in sys.modules)
"""


def test_a_ctrl_c_inside_torch_s_import_is_raised_once_it_is_done():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted; True True", result.stderr


@pytest.mark.parametrize("command", ["train", "test"])
def test_train_and_test_import_torch_through_it_first(monkeypatch, command):
    import fastp2p.ctrl_c_deferred as deferred
    from fastp2p.cli import main

    class Imported(Exception):
        pass

    def first(*args):
        raise Imported

    monkeypatch.setattr(deferred, "import_torch", first)
    with pytest.raises(Imported):   # before any other work: no dataroot needed
        main([command, "--dataroot", "/nonexistent", "--name", "x"])
