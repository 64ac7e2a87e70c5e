"""Results on disk: the JSON of every figure, a markdown table, and a PNG bar chart.

The table and the chart are made from the saved rows only (``fastp2p bench --plot FILE.json``
remakes both from a file), never from a live run.
"""
import itertools
import json
import math
import os
import reprlib
import stat
from pathlib import Path

from fastp2p.atomic_files import open_plain_file, replacing
from fastp2p.json_files import parse_json, read_json

MIB = 1024 * 1024


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


def stem_for(device_slug: str, date: str, commit: str, quick: bool) -> str:
    """``<device>-<YYYYMMDD>-<commit>`` (plus ``-quick`` for the CPU smoke mode)."""
    return f"{device_slug}-{date}-{commit}" + ("-quick" if quick else "")


def results_stem(results: dict) -> str:
    """The stem of the results' file names (``stem_for``)."""
    env = results["environment"]
    return stem_for(results["device_slug"], env["date"], env["commit"],
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
        with replacing(json_path, durable=False) as temporary:
            temporary.write_text(json.dumps(results, indent=1, default=str) + "\n",
                                 encoding="utf-8")
    except BaseException:
        if reserved:
            json_path.unlink(missing_ok=True)
        raise
    return json_path


def results_path(results: dict, out_dir: Path) -> tuple:
    """(the JSON file of the run that made ``results``, whether it was reserved just now).

    ``<stem>.json``, or ``<stem>-2.json``, ``-3``, ... when an earlier run's files hold the
    name: a second run on the same day and commit (every run outside git: its commit is
    "unknown") never replaces another run's results. Its own file is the one whose ``run_id``
    is the run's; a new name is reserved by creating the file exclusively, so two runs started
    together take two names. Anything but a regular file at a JSON name raises
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
    """The results of ``path``, checked to hold everything ``markdown`` and ``plot_training``
    read; raises ValueError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ResultsFileError(f"results file {path} not found (expected a "
                               "benchmarks/results/*.json written by `fastp2p bench`)")
    if not path.is_file():  # a FIFO would block the read for ever
        raise ResultsFileError(f"{path} is {what_is_at(path.resolve())}, not a results file "
                               "(a benchmarks/results/*.json written by `fastp2p bench`)")
    try:
        results = read_json(path)
    except (OSError, ValueError) as error:
        raise ResultsFileError(f"{path} is not readable JSON: {error}") from None
    problem = _results_problem(results)
    if problem:
        raise ResultsFileError(f"{path} is not a fastp2p bench results file ({problem}); "
                               "pass a benchmarks/results/*.json written by `fastp2p bench`")
    return results


# What markdown() and plot_training() read: required keys of the results and of each row (every
# row, then the rows whose status is "ok"), and the optional ones, which may also be missing or
# null; numbers are formatted, scaled and charted, so they must be finite numbers no larger
# than _LARGEST (in a list of numbers too): NaN, Infinity or an int past a float's range
# stopped the table or the chart in a traceback, or in matplotlib's words naming no file.
_TEXT, _NUMBER, _FLAG, _NUMBERS = (str,), (int, float), (bool,), (list,)
_LARGEST = 1e300  # no measured figure comes near; the chart's 1.4x headroom overflows at 1.3e308
_ENVIRONMENT = {"device": _TEXT, "date_utc": _TEXT, "date": _TEXT, "commit": _TEXT,
                "python": _TEXT}
_CONFIG = {"network_description": _TEXT, "steps": _NUMBER, "warmup": _NUMBER}
_STAGES = ("data", "log", "sample", "checkpoint")
_ROWS = {   # section: (every row's, an "ok" row's, optional)
    "training": ({"peer": _TEXT, "batch_size": _NUMBER, "status": _TEXT},
                 {"images_per_s": _NUMBER, "images_per_s_p20": _NUMBER,
                  "images_per_s_p80": _NUMBER, "step_ms": _NUMBER},
                 {"peak_memory_bytes": _NUMBER, "mfu": _NUMBER, "fastp2p_ratio": _NUMBER,
                  "setup_seconds": _NUMBER, "kernels_per_step": _NUMBER}),
    "inference": ({"module": _TEXT, "device": _TEXT, "precision": _TEXT, "channels_last": _FLAG,
                   "batch_size": _NUMBER, "status": _TEXT},
                  {"images_per_s": _NUMBER, "images_per_s_p20": _NUMBER,
                   "images_per_s_p80": _NUMBER, "ms": _NUMBER},
                  {"fastp2p_ratio": _NUMBER}),
    "end_to_end": ({"batch_size": _NUMBER, "processes": _NUMBER, "device": _TEXT,
                    "precision": _TEXT, "status": _TEXT},
                   {"images_per_s": _NUMBER,
                    **{f"{stage}_{figure}": _NUMBER for stage in _STAGES
                       for figure in ("share", "calls")}},
                   # a stage with no call in the timed steps has no time per call (None)
                   {"per_rank_images_per_s": _NUMBERS, "step_only_images_per_s": _NUMBER,
                    "ratio_to_step_only": _NUMBER,
                    **{f"{stage}_ms_per_call": _NUMBER for stage in _STAGES}}),
    "micro": ({"module": _TEXT, "status": _TEXT}, {"median_ms": _NUMBER},
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
    if not isinstance(record, dict):
        return f"{where} is missing or not an object"
    for key, types in fields.items():
        value = record.get(key)
        if optional and value is None:
            continue
        missing = "not" if optional else "missing or not"
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
              (results.get("config"), _CONFIG, "config", False)]
    for section, (every_row, ok_row, optional) in _ROWS.items():
        rows = results.get(section, [])
        if not isinstance(rows, list):
            return f"{section!r} is not a list"
        for number, row in enumerate(rows):
            where = f"{section}[{number}]"
            problem = (_fields_problem(row, every_row, where)
                       or _fields_problem(row, {"error": _TEXT}, where, optional=True))
            if problem:
                return problem
            if row["status"] == "ok":
                checks += [(row, ok_row, where, False), (row, optional, where, True)]
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
    return next(filter(None, (_fields_problem(*check) for check in checks)), None)


def render_files(json_path) -> dict:
    """(Re)make the markdown table and the chart beside a saved results JSON; the chart shows
    the training section, so a run without one gets none (``"chart"``: None), and an older
    chart beside it is removed. ResultsFileError, before anything is written, for results the
    table or chart cannot show, or a folder at the name of either."""
    json_path = Path(json_path)
    results = load_results(json_path)
    markdown_path, chart_path = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    charted = bool(results["training"])
    for path in (markdown_path, chart_path) if charted else (markdown_path,):
        _refuse_folder_at(path)
    with replacing(markdown_path, durable=False) as temporary:
        temporary.write_text(markdown(results), encoding="utf-8")
    if not charted:
        print("no chart: the results hold no training rows" + _remove_older_chart(chart_path))
        return {"markdown": markdown_path, "chart": None}
    try:
        plot_training(results, chart_path)
    except ImportError as error:
        chart_path = None
        print(f"no chart: {error} (pip install matplotlib)")
    return {"markdown": markdown_path, "chart": chart_path}


def _remove_older_chart(chart_path: Path) -> str:
    """Remove a chart (a file, or a link: not followed) left beside results that have none
    now: beside the new table it would show figures that are not these. What was done, as
    words to add to the "no chart" line."""
    what = what_is_at(chart_path)
    if what is None:
        return ""
    if what == "a file" or chart_path.is_symlink():
        chart_path.unlink()
        return f"; removed the older {chart_path} beside them"
    return f"; {chart_path} ({what}) is left as it is"


def _refuse_folder_at(path: Path) -> None:
    """The rename that writes a table or chart replaces a file, or a link (never followed),
    but not a folder: say so, rather than fail with a bare IsADirectoryError."""
    if path.is_dir() and not path.is_symlink():
        raise ResultsFileError(f"{path} is a folder, where the {path.suffix[1:]} beside the "
                               "results goes: move it away and run again")


def _number(value, digits=1, scale=1.0):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value * scale:,.{digits}f}"


def _status_cell(row):
    return f"{row['status']}: {(row.get('error') or '')[:120]}"


def _cell(value) -> str:
    """A table cell's text: a "|" or a line break in it (a micro-benchmark's name or shape, an
    error) ended the cell or the row."""
    return " ".join(str(value).splitlines()).replace("|", "\\|")


def _table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(map(_cell, line)) + " |" for line in lines]
    return out


def markdown(results: dict) -> str:
    env, config = results["environment"], results["config"]
    ceilings, flops = results.get("ceilings") or {}, results.get("flop_model") or {}
    dirty = " (uncommitted changes)" if env.get("commit_dirty") else ""
    lines = [f"# fastp2p benchmark: {env['device']}, {env['date_utc']} UTC, "
             f"commit {env['commit']}{dirty}", ""]
    if not results.get("complete", True):
        lines += ["**Incomplete run**: stopped before every job ran; the rows below are the "
                  "ones that finished.", ""]
    if results["mode"] == "quick":
        lines += ["**Quick mode**: tiny shapes on the CPU, a smoke test of the suite; these "
                  "figures say nothing about GPU speed.", ""]
    if results.get("notes"):
        lines += ["Not run:", "", *(f"- {' '.join(note.splitlines())}"
                                    for note in results["notes"]), ""]
    versions = ", ".join(f"{key} {env[key]}" for key in ("torch", "triton", "cuda", "cudnn",
                                                         "driver") if env.get(key))
    lines += [f"Versions: {versions}, python {env['python']}.",
              f"Networks: {config['network_description']}; {config['steps']} timed steps after "
              f"{config['warmup']} warm-up per peer" + (
                  " (fewer than the protocol's 50)" if config["steps"] < 50 else "") + "."]
    matmul, copy = ceilings.get("matmul"), ceilings.get("copy")
    if matmul or copy:
        parts = []
        if matmul:
            parts.append(f"{matmul['dtype']} matmul {_number(matmul['tflops'])} TFLOP/s "
                         f"({matmul['size']}³)")
        if copy:
            parts.append(f"device-to-device copy {_number(copy['gbps'])} GB/s (read + write)")
        lines.append("Ceilings measured in this run: " + "; ".join(parts) + ".")
    if flops:
        lines.append(f"FLOP model: {flops['train_step_gflop_per_image']:.4g} GFLOP per image per "
                     f"training step from the layer shapes (G forward "
                     f"{flops['generator_forward_gflop']:.4g}, D forward "
                     f"{flops['discriminator_forward_gflop']:.4g}); DESIGN.md estimate for "
                     "256x256 "
                     f"≈{flops['design_estimate_gflop_per_image']:.0f}. MFU = model FLOP/s over "
                     "the matmul rate above.")
    lines.append("")

    training = results.get("training", [])
    if training:
        lines += ["## Training throughput (one full D + G step)", ""]
        rows = []
        for row in training:
            if row["status"] != "ok":
                rows.append([row["peer"], row["batch_size"], _status_cell(row), "", "", "", "",
                             "", "", ""])
                continue
            peak = row.get("peak_memory_bytes")
            rows.append([row["peer"], row["batch_size"], _number(row["images_per_s"]),
                         f"{_number(row['images_per_s_p20'])}–{_number(row['images_per_s_p80'])}",
                         _number(row["step_ms"], 2),
                         _number(peak / MIB, 0) if peak else "–",
                         _number(row.get("mfu"), 1, 100) + ("%" if row.get("mfu") else ""),
                         _number(row.get("fastp2p_ratio"), 2) + (
                             "×" if row.get("fastp2p_ratio") else ""),
                         _number(row.get("setup_seconds"), 1),
                         _number(row.get("kernels_per_step"), 0)])
        lines += _table(["peer", "batch", "images/s (median)", "p20–p80", "step ms",
                         "peak MiB", "MFU", "fastp2p ×", "setup s", "kernels/step"], rows)
        lines += ["", "fastp2p × = fastp2p's images/s over the peer's at the same batch size "
                  "(> 1: fastp2p is faster). setup s = building the networks plus the warm-up "
                  "steps (compilation, graph capture, cuDNN autotuning). peak MiB = most memory "
                  "allocated over the whole job (networks, warm-up, timed steps): what a run of "
                  "the peer needs. kernels/step = GPU kernels per step "
                  "(CUDA profiler; copies and fills not counted), fewer is better at batch 1.", ""]
        lines += [f"- `{name}`: {text}" for name, text in (results.get("peers") or {}).items()]
        lines.append("")

    inference = results.get("inference", [])
    if inference:
        lines += ["## Inference throughput (U-Net forward, no_grad)", ""]
        rows = []
        for row in inference:
            threads = f", {row['threads']} threads" if row.get("threads") else ""
            case = [row["module"], row["device"] + threads, row["precision"] + (
                ", channels-last" if row["channels_last"] else ""), row.get("mode", "eval"),
                row["batch_size"]]
            if row["status"] != "ok":
                rows.append(case + [_status_cell(row), "", "", ""])
                continue
            rows.append(case + [_number(row["images_per_s"]),
                                f"{_number(row['images_per_s_p20'])}–"
                                f"{_number(row['images_per_s_p80'])}",
                                _number(row["ms"], 3),
                                _number(row.get("fastp2p_ratio"), 2)])
        lines += _table(["module", "device", "precision", "mode", "batch", "images/s",
                         "p20–p80", "ms", "fastp2p ×"], rows)
        lines += ["", "fastp2p × = the fastest fastp2p variant's images/s over the row's, same "
                  "device, threads, mode and batch.", ""]

    lines += _end_to_end_lines(results.get("end_to_end", []))

    micro = results.get("micro", [])
    if micro:
        lines += ["## Micro-benchmarks", ""]
        rows = []
        for row in micro:
            label = " ".join(str(row[key]) for key in ("name", "provider", "dtype", "shape",
                                                       "mode") if row.get(key) is not None)
            if row["status"] != "ok":
                rows.append([row["module"], label, _status_cell(row), "", "", ""])
                continue
            spread = (f"{_number(row.get('p20_ms'), 4)}–{_number(row.get('p80_ms'), 4)}"
                      if "p20_ms" in row else "–")
            rows.append([row["module"], label, _number(row["median_ms"], 4), spread,
                         _number(row.get("gbps")),
                         _number(row.get("copy_fraction"), 0, 100) + (
                             "%" if row.get("copy_fraction") is not None else "")])
        lines += _table(["module", "case", "median ms", "p20–p80", "GB/s", "of copy"], rows)
        lines.append("")
    return "\n".join(lines)


def _end_to_end_lines(rows) -> list:
    if not rows:
        return []
    lines = ["## End to end (`fastp2p train` on a packed synthetic set)", ""]
    table = []
    for row in rows:
        case = [row["batch_size"], row["processes"], row["device"], row["precision"]]
        if row["status"] != "ok":
            table.append(case + [_status_cell(row)] + [""] * 8)
            continue
        per_rank = row.get("per_rank_images_per_s", [])
        shares = [f"{_number(row[f'{stage}_share'], 1, 100)}% "
                  f"({_number(row.get(f'{stage}_ms_per_call'), 1)} ms × "
                  f"{row[f'{stage}_calls']})"
                  if row[f"{stage}_calls"] else "–"
                  for stage in ("data", "log", "sample", "checkpoint")]
        table.append(case + [_number(row["images_per_s"]),
                             " / ".join(_number(x) for x in per_rank) if len(per_rank) > 1
                             else "–",
                             _number(row.get("step_only_images_per_s")),
                             _number(row.get("ratio_to_step_only"), 0, 100) + (
                                 "%" if row.get("ratio_to_step_only") is not None else "")]
                     + shares)
    lines += _table(["batch", "processes", "device", "precision", "images/s (total)",
                     "per rank", "step only", "of step only", "waiting for data", "logging",
                     "samples", "checkpoints"], table)
    lines += ["", "Over the steps after the warm-up; each stage: its share of the wall time "
              "(rank 0), ms per call × calls. Step only: the fastp2p peer of the training "
              "section at the same batch size per process; of step only: images/s per process "
              "over it.", ""]
    return lines


def plot_training(results: dict, path) -> None:
    """Bar chart of images/s per peer, one panel per batch size; failed peers are labelled.
    ``results`` must hold training rows (``render_files`` draws no chart without)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    training = results.get("training", [])
    batch_sizes = sorted({row["batch_size"] for row in training})
    peers = list(dict.fromkeys(row["peer"] for row in training))
    figure, axes = plt.subplots(1, len(batch_sizes), squeeze=False, sharey=True,
                                figsize=(2.2 + 3.2 * len(batch_sizes), 0.45 * len(peers) + 1.6))
    for axis, batch in zip(axes[0], batch_sizes):
        by_peer = {row["peer"]: row for row in training if row["batch_size"] == batch}
        measured = [by_peer.get(p, {}).get("status") == "ok" for p in peers]
        values = [by_peer[p]["images_per_s"] if ok else 0 for p, ok in zip(peers, measured)]
        # p20-p80 of the per-step throughput as the error bar
        spread = [[v - by_peer[p]["images_per_s_p20"] if ok else 0 for p, v, ok in
                   zip(peers, values, measured)],
                  [by_peer[p]["images_per_s_p80"] - v if ok else 0 for p, v, ok in
                   zip(peers, values, measured)]]
        colors = ["tab:orange" if p == "fastp2p" else "tab:blue" for p in peers]
        bars = axis.barh(peers, values, xerr=spread, color=colors, ecolor="0.3", capsize=2)
        top = max(values) if any(values) else 1.0
        for bar, peer, value, upper in zip(bars, peers, values, spread[1]):
            row = by_peer.get(peer)
            text = f"{value:,.1f}" if value else (row["status"] if row else "not run")
            axis.text(value + upper + top * 0.03, bar.get_y() + bar.get_height() / 2, text,
                      va="center", fontsize=8)
        axis.set_xlim(0, top * 1.4)
        axis.set_title(f"batch {batch}")
        axis.set_xlabel("images/s (median, p20–p80)")
    axes[0][0].invert_yaxis()  # shared: first peer on top in every panel
    env = results["environment"]
    mode = " — QUICK CPU SMOKE TEST" if results["mode"] == "quick" else ""
    figure.suptitle(f"pix2pix training throughput: {env['device']}, {env['date']}, "
                    f"{env['commit']}{mode}", fontsize=10)
    figure.tight_layout()
    with replacing(path, durable=False) as temporary:
        figure.savefig(temporary, dpi=120)
    plt.close(figure)
