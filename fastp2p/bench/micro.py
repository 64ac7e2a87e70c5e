"""Kernel and data micro-benchmarks: every ``benchmarks/bench_*.py`` module with ``collect``.

The contract for such a module (owned by the kernels, data and C++ areas)::

    def collect(quick: bool) -> list[dict]

Each row needs ``name`` (str) and ``median_ms`` (float > 0); it may carry ``p20_ms``,
``p80_ms``, ``bytes`` (bytes the op must move: each input read once plus each output written
once), ``gbps`` (these finite numbers >= 0), ``device`` ("cuda" | "cpu"; default: the run's
device), ``provider`` (e.g. "reference", "eager", "compile", "fastp2p"), ``dtype``, ``shape``,
``mode``, ``memory_format`` and any other JSON-able fields (str names; no NaN or Infinity),
but not the harness's own ``module``, ``status``, ``error`` or ``traceback``. A row that breaks
this, or whose bandwidth figures come out infinite (bytes / median_ms past a float's range),
fails its module's job, the row and field named, and the run goes on. ``quick=True`` asks for tiny
CPU shapes only. Time with ``fastp2p.bench.timing.benchmark`` (do_bench semantics). The harness
adds ``gbps`` from ``bytes`` where missing, and ``copy_gbps`` / ``copy_fraction`` against the
device-to-device copy bandwidth it measures in the same run
(``fastp2p.bench.ceilings.copy_bandwidth_gbps(device)`` returns that number).
A typical row: ``{"name": "norm_act_fwd", "provider": "fastp2p", "dtype": "bf16",
"shape": "N16-C256-H64-W64-nhwc", "bytes": nbytes, **benchmark(fn, device="cuda").as_dict()}``.
"""
import importlib
import json
import reprlib
import sys
from pathlib import Path

import torch

from fastp2p.bench.ceilings import copy_bandwidth_gbps
from fastp2p.bench.results_files import is_finite_number
from fastp2p.bench.runner import Job


def discover(benchmarks_dir) -> list:
    """Paths of ``bench_*.py`` in ``benchmarks_dir`` (sorted); empty if there is none."""
    if benchmarks_dir is None:
        return []
    return sorted(Path(benchmarks_dir).glob("bench_*.py"))


def import_benchmark_module(path: Path):
    """Import ``benchmarks/bench_x.py`` as ``benchmarks.bench_x`` (as pytest does).

    The checkout is appended to ``sys.path`` (not prepended), so it never shadows the installed
    fastp2p; a same-named package found elsewhere first is an error, not a silent substitute.
    """
    path = path.resolve()
    root = str(path.parent.parent)
    if root not in sys.path:
        sys.path.append(root)
    module = importlib.import_module(f"{path.parent.name}.{path.stem}")
    if Path(module.__file__).resolve() != path:
        raise ImportError(f"importing {path.parent.name}.{path.stem} found {module.__file__}, "
                          f"not {path}: another '{path.parent.name}' package shadows the "
                          "checkout's")
    return module


# The runner's fields: a row carrying one would replace the runner's status or error
_RUNNER_FIELDS = ("module", "status", "error", "traceback")
# Figures the harness computes with or the report formats, optional in a row
_FIGURES = ("p20_ms", "p80_ms", "bytes", "gbps", "copy_gbps", "copy_fraction")


def _is_figure(value) -> bool:
    return is_finite_number(value) and value >= 0


def row_problem(row) -> str | None:
    """The first field of a collected row that breaks the contract, with its value, or None.

    Every field is checked here, before the row is kept: a bad one found only when the
    results were saved stopped the run's table and chart from being written at all. Values
    are shown abridged (``reprlib``): a 400-digit int or a deeply nested list stays one line."""
    if not isinstance(row, dict):
        return f"an item is a {type(row).__name__}, not a dict"
    odd_key = next((key for key in row if not isinstance(key, str)), None)
    if odd_key is not None:  # json.dumps refuses a tuple, and makes 1 and "1" one key
        return f"a field name must be a str, got {reprlib.repr(odd_key)}"
    if not isinstance(row.get("name"), str) or not row["name"]:
        return f"'name' must be a non-empty str, got {reprlib.repr(row.get('name'))}"
    if not _is_figure(row.get("median_ms")) or row["median_ms"] <= 0:
        return ("'median_ms' must be a positive finite number, got "
                f"{reprlib.repr(row.get('median_ms'))}")
    for key in _FIGURES:
        if row.get(key) is not None and not _is_figure(row[key]):
            return f"{key!r} must be a finite number >= 0, got {reprlib.repr(row[key])}"
    if row.get("device", "cpu") not in ("cuda", "cpu"):
        return f"'device' must be \"cuda\" or \"cpu\", got {reprlib.repr(row['device'])}"
    taken = next((key for key in _RUNNER_FIELDS if key in row), None)
    if taken is not None:
        return f"{taken!r} is the harness's own field: name it otherwise"
    for key, value in row.items():
        try:
            json.dumps(value, allow_nan=False)
        except RecursionError:
            return f"{key!r} is nested too deeply to save: {reprlib.repr(value)}"
        except (TypeError, ValueError) as error:
            return f"{key!r} is not JSON ({error}): {reprlib.repr(value)}"
    return None


def _bandwidth_problem(row) -> str | None:
    """The harness's figures of a checked row that are not finite (1e300 bytes in 1e-300 ms
    gave "Infinity" in the JSON and a "–%" in the table), or None."""
    for key in ("gbps", "copy_fraction"):
        if row.get(key) is not None and not is_finite_number(row[key]):
            return (f"{key!r} comes out as {row[key]!r} from bytes "
                    f"{reprlib.repr(row.get('bytes'))} in median_ms {row['median_ms']!r}")
    return None


def normalize_row(row, *, module: str, number: int, default_device: str) -> dict:
    """Check row ``number`` collected from ``module`` against the contract (ValueError naming
    the module, the row and the field) and add bandwidth figures."""
    problem = row_problem(row)
    if problem is not None:
        raise ValueError(f"{module}.collect() row {number}: {problem}")
    row = {"device": torch.device(default_device).type, **row}
    if row.get("gbps") is None and row.get("bytes") is not None:
        row["gbps"] = row["bytes"] / (row["median_ms"] * 1e-3) / 1e9
    if row.get("gbps") is not None:
        row["copy_gbps"] = copy_bandwidth_gbps(row["device"])
        row["copy_fraction"] = row["gbps"] / row["copy_gbps"]
    problem = _bandwidth_problem(row)
    if problem is not None:
        raise ValueError(f"{module}.collect() row {number}: {problem}")
    return row


def micro_job(path: Path, *, quick: bool, device: str) -> Job:
    module_name = path.stem

    def run():
        module = import_benchmark_module(path)
        collect = getattr(module, "collect", None)
        if collect is None:
            return [{"status": "skipped",
                     "error": "no collect(quick) function: a pytest-benchmark-only module"}]
        rows = collect(quick)
        if not isinstance(rows, (list, tuple)):
            raise ValueError(f"{module_name}.collect() must return a list of dicts, got "
                             f"{type(rows).__name__}")
        if not rows:
            raise ValueError(f"{module_name}.collect({quick}) returned no rows")
        return [normalize_row(row, module=module_name, number=number, default_device=device)
                for number, row in enumerate(rows)]

    return Job("micro", module_name, run, {"module": module_name})


def micro_jobs(benchmarks_dir, *, quick: bool, device: str, only=None):
    """One job per module of ``benchmarks_dir``, or per module named in ``only`` (file stems,
    in that order; a name with no module is a ValueError listing the ones there are)."""
    paths = discover(benchmarks_dir)
    if only and benchmarks_dir is None:
        raise ValueError(f"--micro {','.join(only)}: no benchmarks folder to find them in: "
                         "fastp2p is not imported from a source checkout; pass "
                         "--benchmarks-dir")
    if only:
        by_name = {path.stem: path for path in paths}
        missing = [name for name in only if name not in by_name]
        if missing:
            raise ValueError(f"--micro: no {', '.join(missing)} in {benchmarks_dir}; its "
                             f"modules are {', '.join(by_name) or 'none'}")
        paths = [by_name[name] for name in only]
    return [micro_job(path, quick=quick, device=device) for path in paths]
