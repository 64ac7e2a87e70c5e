"""A Ctrl-C during torch's import, in `fastp2p train`, `test` or `bench`'s first second: raised
inside the import (C++ calling back into Python), it aborted the process (SIGABRT from
pybind11's error_already_set), was lost (the command ran to its end), or left numpy.linalg half
imported (a RecursionError later). ``import_torch`` now finishes the import, then raises it."""
import subprocess
import sys

import pytest

from helpers.train_helpers import write_aligned_dataset

# a stop arriving in the middle of torch._dynamo's import, as a real one may; SIGTERM with a
# handler that raises for it, as the bench's
SCRIPT = """
import importlib.abc, signal, sys
STOP = getattr(signal, sys.argv[1])
def stopped(*args):
    raise KeyboardInterrupt
if STOP == signal.SIGTERM:
    signal.signal(signal.SIGTERM, stopped)
class CtrlCInside(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch._dynamo.utils":
            signal.raise_signal(STOP)
        return None
sys.meta_path.insert(0, CtrlCInside())
from fastp2p.stops_deferred import import_torch
try:
    import_torch()
except KeyboardInterrupt:
    print("interrupted;", "torch._dynamo.utils" in sys.modules, "torch._dynamo" in sys.modules)
"""


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_inside_torch_s_import_is_raised_once_it_is_done(stop, tmp_path):
    # outside the checkout, whose fastp2p/ would shadow the installed package
    result = subprocess.run([sys.executable, "-c", SCRIPT, stop], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted; True True", result.stderr


@pytest.mark.parametrize("command", ["train", "test", "bench"])
def test_train_test_and_bench_import_torch_through_it_first(monkeypatch, tmp_path, command):
    import fastp2p.stops_deferred as deferred
    from fastp2p.cli import main

    class Imported(Exception):
        pass

    def first(*args):
        raise Imported

    monkeypatch.setattr(deferred, "import_torch", first)
    # a real dataset: train refuses a missing or empty split before torch loads
    options = (["--out", str(tmp_path / "bench")] if command == "bench"
               else ["--dataroot", str(write_aligned_dataset(tmp_path / "data", pairs=1)),
                     "--name", "x"])
    with pytest.raises(Imported):   # before any work that needs torch
        main([command, *options])
    assert not (tmp_path / "bench").exists()
