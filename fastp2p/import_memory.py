"""Telling an import that ran out of memory (a `ulimit -v` or a job's memory limit below what
torch's, numpy's or even the command line's own modules need) from a broken install, and the
one line that says so. At the bottom of the layers: it imports nothing but the standard
library (and little of it: nothing that Python's start has not loaded but ``opcode`` and
``resource``), so that ``fastp2p.cli`` can say it whatever failed to load after it."""
# Imported here, not where the advice or the check needs them, which may be short of the
# memory to import them.
import errno
import opcode
import os
import sys

# Unix-only, and `import fastp2p.cli` loads this: elsewhere the advice names no limit.
try:
    import resource
    _LIMITS = ((resource.RLIMIT_AS, "-v"), (resource.RLIMIT_DATA, "-d"))  # `ulimit` options
except ImportError:
    _LIMITS = ()

# dlopen's words for an mmap of a library that failed with ENOMEM (an extension module's
# ImportError, or the OSError of a library loaded by ctypes, as torch loads libgomp)
LIBRARY_NOT_MAPPED = "failed to map segment from shared object"


def out_of_memory(error: BaseException) -> BaseException | None:
    """The innermost error of ``error``'s chain (``error``, then what it was raised from or
    while handling) that says an import ran out of memory: a MemoryError, or an OSError of
    ENOMEM (importlib's listing of a folder, ``_fill_cache``, in torch's import at `ulimit -v
    610000`), raised inside an import, or an ImportError or OSError of a library that could
    not be mapped (numpy raises its own ImportError from that one); None where none does."""
    found, seen = None, set()
    # a chain may loop (an error re-raised after one raised from it), which would hang here
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if _import_out_of_memory(error):
            found = error
        error = error.__cause__ or error.__context__
    return found


def _import_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (ImportError, OSError)) and LIBRARY_NOT_MAPPED in str(error):
        return True
    no_memory = isinstance(error, MemoryError) or (isinstance(error, OSError)
                                                   and error.errno == errno.ENOMEM)
    return no_memory and _raised_in_an_import(error.__traceback__)


# The instruction of an import statement (``import x``, ``from x import y``)
_IMPORT_NAME = opcode.opmap["IMPORT_NAME"]


def _raised_in_an_import(frames) -> bool:
    """Whether the traceback ``frames`` passes through a module's top-level code or the import
    machinery (whose frames an import leaves out of the traceback where a module's code
    raised), or ends at an import statement: where a C function the machinery calls raised
    (compiling a module's source, say), Python leaves out every frame of the machinery, and
    the importing line is the last one left (pack's `from fastp2p.data.packed_index import
    ...` at `ulimit -v 154000`, a bare MemoryError)."""
    last = None
    while frames is not None:
        code = frames.tb_frame.f_code
        if code.co_name == "<module>" or code.co_filename.startswith("<frozen importlib"):
            return True
        last, frames = frames, frames.tb_next
    return last is not None and _at_an_import(last)


def _at_an_import(frame) -> bool:
    """Whether the traceback entry ``frame`` raised at an import statement's instruction, or
    the process is too short of memory to tell: reading the code's bytes copies them (on
    3.11), and a MemoryError there, in the check of a MemoryError, ended in a traceback of
    both; its one line is true whichever raised the first."""
    try:
        code = frame.tb_frame.f_code.co_code
    except MemoryError:
        return True
    return 0 <= frame.tb_lasti < len(code) and code[frame.tb_lasti] == _IMPORT_NAME


def not_enough_memory(what: str, reason: BaseException) -> str:
    """The line that says ``what`` ("import torch") failed for want of memory, for ``reason``
    (what ``out_of_memory`` found: asked here again, it might find otherwise where the first
    check had no memory to read a frame), with, for a MemoryError, the file:line it was raised
    at (a bug's MemoryError in a module's start-up is told by where it is), and which limit to
    raise."""
    first_line = (str(reason).splitlines() or [""])[0] or type(reason).__name__
    if isinstance(reason, MemoryError):  # a library that could not be mapped names itself
        first_line += _where_raised(reason)
    return f"not enough memory to {what} ({first_line}): {_memory_limit_advice()}"


def _where_raised(error: MemoryError) -> str:
    """", raised at FILE:LINE" for ``error``, or nothing where finding it runs out of memory
    too (it walks the frames and sys.path): the line goes without it, not as a traceback."""
    try:
        return f", raised at {_raised_at(error.__traceback__)}"
    except MemoryError:
        return ""


def _raised_at(frames) -> str:
    """Where the import that raised is, by the traceback ``frames``: the file:line of the
    innermost module's top-level code in it (which names the module), else of its last frame
    in a file (the import statement, where the import machinery raised), else of its last;
    the file named from the folder on sys.path that holds it where one does. Frozen modules'
    frames (importlib's, and the codecs it reads a source with: "<frozen codecs>:322" at
    `ulimit -v 600000` in torch's import) name no import, nor does the standard library's
    function that a module's top-level code called (pathlib's there). Frames are not read for
    their instructions here: each read copies the code's bytes, which raised a MemoryError of
    its own there."""
    module = in_a_file = last = None
    while frames is not None:
        code = frames.tb_frame.f_code
        if code.co_name == "<module>":
            module = frames
        if not code.co_filename.startswith("<frozen "):
            in_a_file = frames
        last, frames = frames, frames.tb_next
    said = module or in_a_file or last
    return f"{_as_imported(said.tb_frame.f_code.co_filename)}:{said.tb_lineno}"


def _as_imported(path: str) -> str:
    """``path`` under the longest sys.path folder that holds it ("PIL/Image.py"), else as is."""
    longest = ""
    for folder in sys.path:
        if isinstance(folder, str) and folder.rstrip(os.sep):
            folder = folder.rstrip(os.sep) + os.sep
            if path.startswith(folder) and len(folder) > len(longest):
                longest = folder
    return path[len(longest):]


def _memory_limit_advice() -> str:
    """The limit to raise: the process's address-space or data-segment limit where one is set
    (a job's `ulimit -v` / `-d`, with its value), else the machine's or the job's memory."""
    limit = memory_limit_set()
    if limit is not None:
        return f"raise {limit} or the job's memory request, then run it again"
    return "free memory or raise the job's memory limit, then run it again"


def memory_limit_set() -> str | None:
    """"this process's memory limit (`ulimit -v`, now N KiB)" where an address-space limit
    is set, "(`ulimit -d`, ...)" where a data-segment limit is set instead, else None."""
    for limit, option in _LIMITS:
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            return f"this process's memory limit (`ulimit {option}`, now {soft // 1024} KiB)"
    return None
