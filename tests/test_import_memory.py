"""fastp2p.import_memory, which fastp2p.cli asks about every MemoryError, ImportError and
OSError that ends a command: an error chain that loops (an error re-raised after one raised
from it) is read to its end, not forever, the command line loads where the standard
library has no ``resource`` module (not Unix), a MemoryError whose import left no frame of
its own in the traceback is one line too, and a MemoryError's line names where it was raised,
unless finding the place (or telling it was an import's) runs out of memory too: the line then
goes without it, not as a traceback. An OSError of ENOMEM is an import's out of memory where it
is raised in an import (importlib's listing of a folder), not elsewhere."""
import errno
import importlib
import importlib.abc
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastp2p.cli import main
from fastp2p import import_memory
from fastp2p.data import pack_command
from fastp2p.import_memory import not_enough_memory, out_of_memory
from helpers.data_helpers import make_aligned, tiny_pack_args

NOT_MAPPED = "libtorch_cpu.so: failed to map segment from shared object"

# an ImportError re-raised after a fallback's error raised from it: the first's __context__ is
# the second, whose __cause__ is the first, a loop in the chain that ``out_of_memory`` walks
LOOPED_CHAIN = f"""
from fastp2p.import_memory import out_of_memory
try:
    try:
        raise ImportError("the extension")
    except ImportError as first:
        try:
            raise ImportError("{NOT_MAPPED}") from first
        except ImportError:
            raise first
except ImportError as error:
    print(out_of_memory(error))
"""

# the standard library of a platform without ``resource``
WITHOUT_RESOURCE = f"""
import sys
sys.modules["resource"] = None
from fastp2p.cli import build_parser
from fastp2p.import_memory import not_enough_memory
build_parser()
print(not_enough_memory("import torch", ImportError("{NOT_MAPPED}")))
"""


def _run(script: str, folder) -> subprocess.CompletedProcess:
    # in a subprocess: the loop, where it is back, must not hold the test run; run from
    # ``folder``, not the checkout, whose uninstalled source fastp2p refuses to import
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=folder)


def test_an_error_chain_that_loops_is_read_once(tmp_path):
    """It looped forever: a command ended by such an error hung where it printed a
    traceback."""
    assert _run(LOOPED_CHAIN, tmp_path).stdout == f"{NOT_MAPPED}\n"


def test_without_resource_the_advice_names_no_limit(tmp_path):
    """``import resource`` at the top made ``import fastp2p.cli`` fail there; it was imported
    only where the advice needs it, for that reason."""
    run = _run(WITHOUT_RESOURCE, tmp_path)
    assert run.stdout == (f"not enough memory to import torch ({NOT_MAPPED}): free memory or "
                          "raise the job's memory limit, then run it again\n"), run.stderr


# A module source that Python's parser refuses with a MemoryError (its stack overflows): raised
# in compile(), which the import machinery calls with its own frames left out of the traceback
TOO_DEEP_SOURCE = "x = " + "-" * 20000 + "1\n"


class _TooDeepModule(importlib.abc.MetaPathFinder):
    """Finds module ``name`` in ``path``, a file of TOO_DEEP_SOURCE."""

    def __init__(self, name: str, path):
        self.name, self.path = name, path

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        return importlib.util.spec_from_file_location(name, self.path)


def test_a_memory_error_that_left_only_the_importing_line_is_one_line(tmp_path, monkeypatch,
                                                                      capsys):
    """`fastp2p pack` at `ulimit -v 154000` printed a traceback ending in a bare MemoryError,
    raised at `from fastp2p.data.packed_index import ...` with no frame of the import's: the
    check looked for one. Emulated there: that module's source compiled into a MemoryError."""
    try:
        compile(TOO_DEEP_SOURCE, "too_deep", "exec")
        pytest.skip("this Python's parser compiles the deep source")
    except MemoryError:
        pass
    (tmp_path / "too_deep.py").write_text(TOO_DEEP_SOURCE)
    make_aligned(tmp_path / "data", count=1)
    monkeypatch.delitem(sys.modules, "fastp2p.data.packed_index", raising=False)
    monkeypatch.setattr(sys, "meta_path", [
        _TooDeepModule("fastp2p.data.packed_index", tmp_path / "too_deep.py"), *sys.meta_path])
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    said = re.match(r"fastp2p pack: error: not enough memory to run the command \(MemoryError, "
                    r"raised at (\S+):(\d+)\): ", err)
    assert said and pack_command.__file__.endswith(said[1]), err
    assert err.count("\n") == 1, err
    # the importing line: the module the machinery failed to load is named there
    importing_line = Path(pack_command.__file__).read_text().splitlines()[int(said[2]) - 1]
    assert "from fastp2p.data.packed_index import" in importing_line, err


# A module whose start-up raises a MemoryError of its own (a bug's, or an allocation too big
# for any limit), in a function that its fourth line calls
MEMORY_ERROR_AT_START = "def allocate():\n    raise MemoryError\n\nallocate()\n"


def _memory_error_at_start(folder, monkeypatch) -> MemoryError:
    """The MemoryError of importing MEMORY_ERROR_AT_START, a module written in ``folder``."""
    (folder / "memory_error_at_start.py").write_text(MEMORY_ERROR_AT_START)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "memory_error_at_start", raising=False)
    try:
        importlib.import_module("memory_error_at_start")
    except MemoryError as error:
        return error
    pytest.fail("the module's start-up raised nothing")


def test_a_memory_error_in_a_modules_start_up_names_where_it_was_raised(tmp_path, monkeypatch):
    """The line said "(MemoryError)" alone: which import failed, and so whether a limit or a
    bug's MemoryError in a module's start-up was to blame, was lost with the traceback."""
    said = not_enough_memory("run the command", _memory_error_at_start(tmp_path, monkeypatch))
    # the module's line, not the function's: the module names the import
    assert said.startswith("not enough memory to run the command (MemoryError, raised at "
                           "memory_error_at_start.py:4): "), said


def test_a_memory_error_in_finding_where_it_was_raised_leaves_the_place_out(tmp_path,
                                                                            monkeypatch):
    """Finding the place walks the frames and sys.path, which may run out of memory too: that
    MemoryError came out of the line's making, a traceback where the line was due."""
    error = _memory_error_at_start(tmp_path, monkeypatch)

    def out_of_memory_too(frames):
        raise MemoryError

    monkeypatch.setattr(import_memory, "_raised_at", out_of_memory_too)
    assert not_enough_memory("run the command", error).startswith(
        "not enough memory to run the command (MemoryError): ")


class _CodeWithoutMemoryToCopy:
    """A code object as a process out of memory has it: its bytes, copied as they are read,
    raise a MemoryError."""
    co_name, co_filename = "allocate", "work.py"

    @property
    def co_code(self):
        raise MemoryError


def test_a_memory_error_in_reading_a_frames_code_is_taken_for_the_limit():
    """Telling whether a MemoryError was raised at an import statement reads the last frame's
    code bytes; a MemoryError there came out of the check, a traceback of both."""
    frame = SimpleNamespace(tb_frame=SimpleNamespace(f_code=_CodeWithoutMemoryToCopy()),
                            tb_lasti=0, tb_next=None)
    assert import_memory._raised_in_an_import(frame)


# the folder that importlib's FileFinder failed to list under `ulimit -v 610000` in torch's import
UNLISTED = "/venv/lib/python3.11/site-packages/torch/ao/nn/quantized/reference"


class _FolderNotListed(importlib.abc.MetaPathFinder):
    """Fails to find module ``name`` as FileFinder's listing of a folder (``_fill_cache``)
    failed for want of memory."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, name, path, target=None):
        if name == self.name:
            raise OSError(errno.ENOMEM, "Cannot allocate memory", UNLISTED)
        return None


def test_an_import_that_could_not_list_a_folder_for_want_of_memory_is_one_line(
        tmp_path, monkeypatch, capsys):
    """torch's import at `ulimit -v 610000` printed a traceback ending in "OSError: [Errno 12]
    Cannot allocate memory: '.../torch/ao/nn/quantized/reference'" from importlib's
    ``_fill_cache``: the check took only a library that could not be mapped for an OSError of
    memory. Emulated in pack's import of its own module."""
    make_aligned(tmp_path / "data", count=1)
    monkeypatch.delitem(sys.modules, "fastp2p.data.packed_index", raising=False)
    monkeypatch.setattr(sys, "meta_path",
                        [_FolderNotListed("fastp2p.data.packed_index"), *sys.meta_path])
    assert main(tiny_pack_args(tmp_path / "data", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastp2p pack: error: not enough memory to run the command ([Errno 12] "
                          f"Cannot allocate memory: '{UNLISTED}'): "), err
    assert err.count("\n") == 1, err


def _enomem_outside_an_import() -> OSError:
    try:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")   # as fork() raises it
    except OSError as error:
        return error


def test_an_enomem_outside_an_import_is_no_import_out_of_memory():
    """Only an import's: a command's own ENOMEM (a worker's fork, say) is told where it is."""
    assert out_of_memory(_enomem_outside_an_import()) is None
