"""The one reader of the measured choice tables (DESIGN §6: a path becomes a default only by a
measurement): ``cuda_norm_act_choice.json`` (cuda_choice) and ``conv_choice.json``
(conv_choice), both written by a GPU run's benchmark and committed with its results.

Both follow one rule: the table names the ``device`` it was measured on (``device_name``), and
routes calls on that device only — a shape or device missing from it runs the established path.
No table routes nothing; a table that cannot be read, or is not of its expected form, is one
line of ValueError naming the file and how to fix it (rebuild or delete), never a KeyError or
TypeError traceback from deep in a lookup.
"""
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from fastp2p.json_files import read_json

# The most of a table that is read (past it: refused as unreadable, not read whole until
# memory runs out): a GPU run's tables are a few hundred KiB at most.
MAX_TABLE_BYTES = 16 << 20


def device_name(device) -> str:
    """The name a table gives the device it was measured on: torch's name of a CUDA device
    ("NVIDIA H200"; the same as the benchmark's record, fastp2p.bench.environment), else the
    device type ("cpu": only tests write such a table, for the Triton interpreter)."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    return _cuda_name(torch.cuda.current_device() if device.index is None else device.index)


@lru_cache(maxsize=None)
def _cuda_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def read_table(path: Path, *, kind: str, remedy: str,
               keys: Callable[[str, dict], Iterable[tuple]],
               check_format: Optional[Callable[[Path, object], None]] = None) -> frozenset:
    """The routed keys of the table at ``path``: ``keys(device, table)`` builds them from the
    parsed object and its "device" (a string), each key holding that device so that a lookup
    matches only calls on it; empty without a table. ``kind`` names the table in the refusal
    ("conv choice table"), ``remedy`` says how to rebuild it. ``check_format(path, table)``,
    when given, runs first and raises its own one-line ValueError for a table of another
    format (saying what changed)."""
    try:
        table = read_json(path, max_bytes=MAX_TABLE_BYTES)
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError) as error:
        raise _unreadable(path, kind, remedy, error) from error
    if check_format is not None:
        check_format(path, table)
    try:
        device = table["device"] if isinstance(table, dict) else None
        if not isinstance(device, str):
            raise ValueError(f"its \"device\" is {device!r}, not the name of the device it "
                             "was measured on")
        return frozenset(keys(device, table))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise _unreadable(path, kind, remedy, repr(error)) from error


def _unreadable(path: Path, kind: str, remedy: str, why) -> ValueError:
    return ValueError(f"{path} is not a readable {kind} ({why}); {remedy} or delete it")
