"""Results files on disk: the names a run's JSON takes (``<device>-<YYYYMMDD>-<commit>.json``,
then ``-2``, ``-3``, ...), its atomic write, and its loading back, checked to hold everything
``fastp2p.bench.render`` reads.
"""
import itertools
import json
import math
import os
import reprlib
import stat
from pathlib import Path

from fastp2p.atomic_files import open_plain_file, replacing
from fastp2p.data.errors import shown_path
from fastp2p.json_files import is_utf8, parse_json, read_json


class ResultsFileError(ValueError):
    """A results file, or a name beside it, that the bench cannot read or write; its text is
    one line naming the file."""


def what_is_at(path) -> str | None:
    """What is at ``path`` itself (a link not followed): "a file", "a folder", "a FIFO", "a
    special file" or "a symbolic link (to X)"; None when nothing is there."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)})"
    return ("a file" if stat.S_ISREG(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a special file")


def stem_for(device_slug: str, date: str, commit: str, build, quick: bool) -> str:
    """``<device>-<YYYYMMDD>-<commit>`` (plus ``-quick`` for the CPU smoke mode); with no
    commit (an installed fastp2p: "unknown"), ``build-<build fingerprint>`` in its place, so
    two installed builds' results are told apart by their names too (``build``: None or
    "unknown" where it is not known, e.g. an older version's results)."""
    if commit == "unknown" and isinstance(build, str) and build != "unknown":
        commit = f"build-{build}"
    return f"{device_slug}-{date}-{commit}" + ("-quick" if quick else "")


def results_stem(results: dict) -> str:
    """The stem of the results' file names (``stem_for``)."""
    env = results["environment"]
    return stem_for(results["device_slug"], env["date"], env["commit"], env.get("build"),
                    results["mode"] == "quick")


def _json_names(out_dir: Path, stem: str):
    """``<stem>.json``, ``<stem>-2.json``, ``-3``, ...: the names a run's results may take."""
    for number in itertools.count(1):
        yield out_dir / f"{stem}{'' if number == 1 else f'-{number}'}.json"


def _refuse_unless_file(path: Path) -> None:
    """ResultsFileError for anything but a regular file at a results JSON's name (a FIFO,
    whose reading would block for ever; a folder; a link); nothing there is fine."""
    what = what_is_at(path)
    if what not in (None, "a file"):
        raise ResultsFileError(f"{path} is {what}, where a results JSON goes: move it away "
                               "and run again")


def check_results_name(out_dir, stem: str) -> None:
    """ResultsFileError, before any job runs, for what a run of ``stem`` would meet at the
    results name it is to take in ``out_dir`` (the names ``results_path`` walks through)."""
    for path in _json_names(Path(out_dir), stem):
        _refuse_unless_file(path)
        if not any(os.path.lexists(path.with_suffix(suffix)) for suffix in (".json", ".md",
                                                                           ".png")):
            return


def write_json(results: dict, out_dir) -> Path:
    """Write the results JSON atomically (a partial run's file is replaced, never torn) to
    this run's file (``results_path``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, reserved = results_path(results, out_dir)
    try:
        with replacing(json_path, durable=False) as file:
            file.write((json.dumps(results, indent=1, default=str) + "\n").encode("utf-8"))
    except BaseException:
        if reserved:
            json_path.unlink(missing_ok=True)
        raise
    return json_path


def results_path(results: dict, out_dir: Path) -> tuple:
    """(the JSON file of the run that made ``results``, whether it was reserved just now).

    ``<stem>.json``, or ``<stem>-2.json``, ``-3``, ... when an earlier run's files hold the
    name: a second run on the same day and commit (or, installed, the same build) never
    replaces another run's results. Its own file is the one whose ``run_id`` is the run's; a
    new name is reserved by creating the file exclusively, so two runs started together take
    two names. Anything but a regular file at a JSON name raises
    ResultsFileError (``check_results_name`` says so before the first job)."""
    run_id = results.get("run_id")
    for path in _json_names(out_dir, results_stem(results)):
        _refuse_unless_file(path)
        if run_id is not None and _run_id_of(path) == run_id:
            return path, False
        if any(os.path.lexists(path.with_suffix(suffix)) for suffix in (".md", ".png")):
            continue
        try:
            path.open("x").close()
        except FileExistsError:
            continue
        return path, True


def _run_id_of(path: Path):
    """The ``run_id`` of the results file at ``path``; None when there is no readable one.
    NotAPlainFile (a ValueError) for anything but a regular file (put there since
    ``_refuse_unless_file`` looked)."""
    try:
        with open(path, "rb", opener=open_plain_file) as handle:
            data = handle.read()
    except OSError:  # nothing there, or another user's: not this run's file
        return None
    try:
        return parse_json(data.decode("utf-8")).get("run_id")
    except (ValueError, AttributeError):  # not text, not JSON, not an object: another file
        return None


def load_results(path) -> dict:
    """The results of ``path``, checked to hold everything ``render.markdown`` and
    ``render.plot_training`` read; raises ResultsFileError (a ValueError) naming the file."""
    path, shown = Path(path), shown_path(path)   # --plot " " showed as nothing
    if not path.exists():
        raise ResultsFileError(f"results file {shown} not found (expected a "
                               "benchmarks/results/*.json written by `fastp2p bench`)")
    if not path.is_file():  # a FIFO would block the read for ever
        raise ResultsFileError(f"{shown} is {what_is_at(path.resolve())}, not a results file "
                               "(a benchmarks/results/*.json written by `fastp2p bench`)")
    try:
        results = read_json(path)
    except (OSError, ValueError) as error:
        raise ResultsFileError(f"{shown} is not readable JSON: {error}") from None
    problem = _results_problem(results)
    if problem:
        raise ResultsFileError(f"{shown} is not a fastp2p bench results file ({problem}); "
                               "pass a benchmarks/results/*.json written by `fastp2p bench`")
    return results


# What render.markdown() and render.plot_training() read: required keys of the results and of
# each row (every row, then the rows whose status is "ok"), and the optional ones, which may
# also be missing or null; numbers are formatted, scaled and charted, so they must be finite
# numbers no larger than _LARGEST (in a list of numbers too): NaN, Infinity or an int past a
# float's range stopped the table or the chart in a traceback, or in matplotlib's words naming
# no file.
_TEXT, _NUMBER, _FLAG, _NUMBERS = (str,), (int, float), (bool,), (list,)
_LARGEST = 1e300  # no measured figure comes near; the chart's 1.4x headroom overflows at 1.3e308
_ENVIRONMENT = {"device": _TEXT, "date_utc": _TEXT, "date": _TEXT, "commit": _TEXT,
                "python": _TEXT}
# machine_load's sample, in "environment" and in "load_at_end": the busy-machine note compares
# and formats both figures (a text or an int past a float's range stopped it in a traceback)
_LOAD = {"load_average": _NUMBER, "usable_cpus": _NUMBER}
_CONFIG = {"network_description": _TEXT, "steps": _NUMBER, "warmup": _NUMBER}
_STAGES = ("data", "log", "sample", "checkpoint")
_ROWS = {   # section: (every row's, every row's optional, an "ok" row's, its optional)
    "training": ({"peer": _TEXT, "batch_size": _NUMBER, "status": _TEXT},
                 {"precision": _TEXT, "channels_last": _FLAG, "error": _TEXT},
                 {"images_per_s": _NUMBER, "images_per_s_p20": _NUMBER,
                  "images_per_s_p80": _NUMBER, "step_ms": _NUMBER},
                 {"peak_memory_bytes": _NUMBER, "mfu": _NUMBER, "fastp2p_ratio": _NUMBER,
                  "setup_seconds": _NUMBER, "kernels_per_step": _NUMBER}),
    "inference": ({"module": _TEXT, "device": _TEXT, "precision": _TEXT, "channels_last": _FLAG,
                   "batch_size": _NUMBER, "status": _TEXT},
                  {"threads": _NUMBER, "mode": _TEXT, "error": _TEXT},
                  {"images_per_s": _NUMBER, "images_per_s_p20": _NUMBER,
                   "images_per_s_p80": _NUMBER, "ms": _NUMBER},
                  {"fastp2p_ratio": _NUMBER, "setup_seconds": _NUMBER}),
    "end_to_end": ({"batch_size": _NUMBER, "processes": _NUMBER, "device": _TEXT,
                    "precision": _TEXT, "status": _TEXT},
                   {"error": _TEXT},
                   {"images_per_s": _NUMBER,
                    **{f"{stage}_{figure}": _NUMBER for stage in _STAGES
                       for figure in ("share", "calls")}},
                   # a stage with no call in the timed steps has no time per call (None)
                   {"per_rank_images_per_s": _NUMBERS, "step_only_images_per_s": _NUMBER,
                    "ratio_to_step_only": _NUMBER,
                    **{f"{stage}_ms_per_call": _NUMBER for stage in _STAGES}}),
    "micro": ({"module": _TEXT, "status": _TEXT}, {"error": _TEXT}, {"median_ms": _NUMBER},
              {"p20_ms": _NUMBER, "p80_ms": _NUMBER, "gbps": _NUMBER, "copy_fraction": _NUMBER}),
}
_CEILINGS = {"matmul": {"dtype": _TEXT, "tflops": _NUMBER, "size": _NUMBER},
             "copy": {"gbps": _NUMBER}}
_FLOP_MODEL = {key: _NUMBER for key in ("train_step_gflop_per_image", "generator_forward_gflop",
                                        "discriminator_forward_gflop",
                                        "design_estimate_gflop_per_image")}


def is_finite_number(value) -> bool:
    """An int or float (not a bool) that is finite as a float: an int past a float's range
    (``10**400``) is not, where ``math.isfinite`` raises OverflowError."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_number(value) -> bool:
    return is_finite_number(value) and abs(value) <= _LARGEST


def _fields_problem(record, fields: dict, where: str, optional: bool = False) -> str | None:
    """What keeps ``record`` from holding ``fields`` (key: allowed types), or None."""
    missing = "not" if optional else "missing or not"
    if not isinstance(record, dict):
        return f"{where} is {missing} an object"
    for key, types in fields.items():
        value = record.get(key)
        if optional and value is None:
            continue
        if types is _NUMBER and not _is_number(value):
            return (f"{where}[{key!r}] is {missing} a finite number (at most {_LARGEST:g} in "
                    f"size): {reprlib.repr(value)}")
        if not isinstance(value, types):
            return f"{where}[{key!r}] is {missing} a {'/'.join(t.__name__ for t in types)}"
        if types is _NUMBERS and not all(map(_is_number, value)):
            return f"{where}[{key!r}] is not a list of numbers"
    return None


def _results_problem(results) -> str | None:
    """What keeps ``results`` from being reported, or None."""
    if not isinstance(results, dict):
        return "not a JSON object"
    if results.get("mode") not in ("full", "quick"):
        return "'mode' is not \"full\" or \"quick\""
    if "training" not in results:
        return "no 'training' key"
    checks = [(results.get("environment"), _ENVIRONMENT, "environment", False),
              (results.get("environment"), _LOAD, "environment", True),
              (results.get("config"), _CONFIG, "config", False)]
    if results.get("load_at_end") is not None:
        checks.append((results["load_at_end"], _LOAD, "load_at_end", True))
    for section, (every_row, every_optional, ok_row, ok_optional) in _ROWS.items():
        rows = results.get(section, [])
        if not isinstance(rows, list):
            return f"{section!r} is not a list"
        for number, row in enumerate(rows):
            where = f"{section}[{number}]"
            problem = (_fields_problem(row, every_row, where)
                       or _fields_problem(row, every_optional, where, optional=True))
            if problem:
                return problem
            if row["status"] == "ok":
                checks += [(row, ok_row, where, False), (row, ok_optional, where, True)]
    # optional, so missing or null (a null "notes" was refused, unlike the others' nulls)
    notes = results.get("notes")
    if notes is not None and not (isinstance(notes, list)
                                  and all(isinstance(note, str) for note in notes)):
        return "'notes' is not a list of str"
    for name in ("ceilings", "flop_model", "peers"):
        if not isinstance(results.get(name) or {}, dict):
            return f"{name!r} is not an object"
    for name, fields in _CEILINGS.items():
        if (results.get("ceilings") or {}).get(name):
            checks.append((results["ceilings"][name], fields, f"ceilings[{name!r}]", False))
    if results.get("flop_model"):
        checks.append((results["flop_model"], _FLOP_MODEL, "flop_model", False))
    return (next(filter(None, (_fields_problem(*check) for check in checks)), None)
            or _lone_surrogate(results))


def _lone_surrogate(results: dict) -> str | None:
    """Where a string or key of ``results`` holds a lone surrogate (JSON's ``"\\udcff"``), or
    None: such text is not UTF-8, so writing the table stopped in UnicodeEncodeError and drawing
    the chart in matplotlib's TypeError. A walk with a stack: recursion would run out of stack
    on a file nested nearly as deep as json reads."""
    stack = [(None, results)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str) and not is_utf8(value):
            return f"{where} is not UTF-8 text (a lone surrogate): {reprlib.repr(value)}"
        for key, item in _members(value):
            if isinstance(key, str) and not is_utf8(key):
                return (f"{where or 'the results'} has a key that is not UTF-8 text (a lone "
                        f"surrogate): {reprlib.repr(key)}")
            stack.append((f"{where}[{key!r}]" if where else key, item))
    return None


def _members(value):
    """(key or index, member) of a JSON object or array; nothing for a scalar."""
    if isinstance(value, dict):
        return value.items()
    return enumerate(value) if isinstance(value, list) else ()
