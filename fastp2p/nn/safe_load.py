"""Loading a PyTorch checkpoint file without running code in it: weights only, and one line
that names the file for whatever keeps it from loading.

Its own module, under both ``fastp2p.nn.checkpoint`` (state_dicts, which loads a path through
``fastp2p.nn.checkpoint_sets``) and ``fastp2p.nn.checkpoint_sets`` (a set's files, each loaded
through this): the two import it, not each other in a loop."""
import pickle
import re
import warnings
from os import PathLike

import torch

from fastp2p.file_reads import open_to_read
from fastp2p.nn.checkpoint_size import refuse_amplified

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
# how torch's weights-only unpickler names a global it will not import ("GLOBAL posix.system")
_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_safely(source, map_location="cpu", name=None):
    """``torch.load(source, weights_only=True)``: tensors and plain containers only, so loading
    never runs code. ``source``: a path or an open binary file (``name`` names it in errors).
    Raises ValueError, one line, for a file that is empty, not a PyTorch checkpoint, truncated,
    or holds other Python objects (which a pickle could turn into code execution), or a path
    that is not a regular file (``open_to_read``: a FIFO blocked the load). The zip records'
    CRC32s are not checked (torch does not, and checking costs over half a load: README), so a
    damaged file that still parses loads; a run folder's manifest checks its files' SHA-256."""
    name = _source_name(source) if name is None else name
    if isinstance(source, (str, PathLike)):
        with open_to_read(source) as handle:
            return load_safely(handle, map_location, name)
    try:
        with warnings.catch_warnings():
            # torch warns of a pickle protocol other than its own before failing (pickle.dump's
            # file) or loading; what fails is said below, in one line naming the file
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # torch 2.14 warns that it checks a sparse tensor's indices (it still checks them,
            # and raises for bad ones); fastp2p then refuses the tensor in one line
            # (checkpoint.weights_problem): no network has sparse weights
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            loaded = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = _BLOCKED_GLOBAL.search(str(err))
        if blocked:
            raise ValueError(f"{name}: refused, it holds a Python object ({blocked.group(1)}) "
                             "other than tensors and plain containers, and loading it could "
                             "run code; load only checkpoints written by torch.save of a "
                             "state_dict") from None
        error = err  # an opcode the safe unpickler does not know: damaged, or not torch.save's
    except OSError as err:
        if err.filename is not None:  # the file itself could not be opened: the caller's case
            raise
        error = err  # torch's zip reader on a cut file: errno 22 without a file name
    except (EOFError, RuntimeError, KeyError, IndexError, ValueError, TypeError) as err:
        error = err
    else:
        refuse_amplified(loaded, name)
        return loaded
    head = _first_bytes(source)
    if head == b"":
        raise ValueError(f"{name}: the file is empty, not a PyTorch checkpoint (a save that "
                         "was cut off?)") from None
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{name}: truncated or damaged PyTorch checkpoint "
                         f"({type(error).__name__}); write it again") from None
    if head.startswith(b"\x80"):  # a pickle: PyTorch's legacy format, or pickle.dump's own
        raise ValueError(f"{name}: a pickle that is not a PyTorch checkpoint, or a truncated or "
                         f"damaged legacy one ({type(error).__name__}); load only files "
                         "written by torch.save") from None
    raise ValueError(f"{name}: not a PyTorch checkpoint (expected a file written by "
                     "torch.save)") from None


def _source_name(source) -> str:
    """How errors name ``source``: its path; for an open file, the path it was opened with
    (its repr, ``<_io.BufferedReader name=...>``, is no name for a user), if it has one."""
    if isinstance(source, (str, PathLike)):
        return str(source)
    path = getattr(source, "name", None)  # open(fd) files are named by their int descriptor
    return str(path) if isinstance(path, (str, PathLike)) else "the given file object"


def _first_bytes(source, count=4) -> bytes:
    if hasattr(source, "seek"):
        source.seek(0)
        return source.read(count)
    with open(source, "rb") as handle:
        return handle.read(count)
