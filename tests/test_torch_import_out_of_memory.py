"""A memory limit too low for torch's import (`ulimit -v 600000`: a MemoryError in its Python
code; lower, an ImportError, or ctypes' OSError, of a library that could not be mapped) is one
line naming the limit to raise, exit code 1, where it was a 20-line traceback: in train, and in
info, which imports torch without torch._dynamo (it still printed the traceback). `fastp2p pack`
imports no torch (tests/test_light_module_imports.py). So is a limit too low for numpy's import,
or for the command line's own (fastp2p.cli, fastp2p.import_memory)."""
import re
import resource
import subprocess
import sys

import pytest

from helpers.train_helpers import write_aligned_dataset

# the error raised as the import reaches ``module``, as a capped address space raises it
SCRIPT = """
import builtins, importlib.abc, resource, sys
cap, module, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3].split()
error = getattr(builtins, sys.argv[4])(*sys.argv[5:])
class NoMemory(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == module:
            raise error
        return None
sys.meta_path.insert(0, NoMemory())
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
from fastp2p.cli import main
sys.exit(main(argv))
"""


NOT_MAPPED = "libtorch_cpu.so: failed to map segment from shared object"
# torch loads libgomp with ctypes, whose refusal is an OSError (`ulimit -v 30000` here)
GOMP_NOT_MAPPED = "libgomp.so.1: failed to map segment from shared object"
# on a real dataset (_dataset_in): train refuses a missing or empty split before torch loads
TRAIN = "train --dataroot data --name x"
# an address-space limit (`ulimit -v`) ample for the import, within the hard limit
_HARD = resource.getrlimit(resource.RLIMIT_AS)[1]
CAP = 40 << 30 if _HARD == resource.RLIM_INFINITY else _HARD


def _where_left_out(stderr: str) -> str:
    """``stderr`` with a MemoryError's "raised at FILE:LINE" left out: the line of torch that
    imports the module, or of SCRIPT's finder (tests/test_import_memory.py checks the line)."""
    return re.sub(r"\(MemoryError, raised at \S+:\d+\)", "(MemoryError)", stderr)


def _dataset_in(folder):
    """TRAIN's --dataroot, written in ``folder`` (the command's working folder)."""
    write_aligned_dataset(folder / "data", pairs=1, phases=("train",))


@pytest.mark.parametrize("argv, module, error, reason", [
    (TRAIN, "torch._dynamo", ["MemoryError"], "MemoryError"),
    (TRAIN, "torch._C", ["ImportError", NOT_MAPPED], NOT_MAPPED),
    ("info", "torch.nn", ["MemoryError"], "MemoryError"),
    ("info", "torch._C", ["ImportError", NOT_MAPPED], NOT_MAPPED),
    ("info", "torch._C", ["OSError", GOMP_NOT_MAPPED], GOMP_NOT_MAPPED),
], ids=["train-MemoryError", "train-library-not-mapped", "info-MemoryError",
        "info-library-not-mapped", "info-ctypes-library-not-mapped"])
def test_torch_s_import_out_of_memory_is_one_line_naming_the_limit(tmp_path, argv, module, error,
                                                                   reason):
    _dataset_in(tmp_path)
    # outside the checkout, whose fastp2p/ would shadow the installed package
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(CAP), module, argv, *error],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 1, run.stderr
    assert _where_left_out(run.stderr.strip()) == (
        f"fastp2p {argv.split()[0]}: error: not enough memory to import torch ({reason}): "
        "raise this process's memory limit "
        f"(`ulimit -v`, now {CAP // 1024} KiB) or the job's memory request, then run it again"), \
        run.stderr


def test_other_import_errors_of_torch_stay_as_they_are(tmp_path):
    """A broken install is no lack of memory: its own ImportError, as before."""
    _dataset_in(tmp_path)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(CAP), "torch._C", TRAIN,
                          "ImportError", "libcudart.so.12: cannot open shared object file"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 1
    # (its traceback names cli.py's functions, one of which says "out_of_memory")
    assert "ImportError: libcudart.so.12" in run.stderr
    assert "not enough memory" not in run.stderr


def _not_mapped(library: str) -> str:
    return f"{library}.cpython-311-x86_64-linux-gnu.so: failed to map segment from shared object"


NUMPY_NOT_MAPPED = ["ImportError", _not_mapped("_multiarray_umath")]


@pytest.mark.parametrize("argv, said_as, module, error, phase", [
    ("pack data packed", "fastp2p pack", "numpy._core._multiarray_umath", NUMPY_NOT_MAPPED,
     "run"),
    (TRAIN, "fastp2p train", "numpy._core._multiarray_umath", NUMPY_NOT_MAPPED, "run"),
    ("info", "fastp2p", "_socket", ["ImportError", _not_mapped("_socket")], "start"),
    ("test --dataroot data --name x", "fastp2p", "fastp2p.train.stop_requests", ["MemoryError"],
     "start"),
], ids=["pack-numpy", "train-numpy-through-matplotlib", "parser-multiprocessing",
        "cli-own-imports"])
def test_an_import_out_of_memory_is_one_line_naming_the_limit_and_the_phase(
        tmp_path, argv, said_as, module, error, phase):
    """Below what numpy's import needs (`ulimit -v 45000` here): pack printed numpy's 30-line
    ImportError, train blamed matplotlib (exit code 2); lower, the parser's multiprocessing
    import, or the command line module's own, were tracebacks. numpy wraps the library's error
    (raise ... from): the line names the library's. An import in the command's work (numpy's)
    said "to start the command" too, where the command had started: "to run" it now."""
    _dataset_in(tmp_path)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(CAP), module, argv, *error],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert (run.returncode, _where_left_out(run.stderr)) == (1, (
        f"{said_as}: error: not enough memory to {phase} the command ({error[-1]}): raise this "
        f"process's memory limit (`ulimit -v`, now {CAP // 1024} KiB) or the job's memory "
        "request, then run it again\n"))
