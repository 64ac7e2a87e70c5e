"""The markdown table and the PNG bar chart beside a results JSON.

Both are made from the saved rows only (``fastp2p bench --plot FILE.json`` remakes both from a
file), never from a live run; ``fastp2p.bench.results_files`` names, writes and checks the JSON.
"""
import math
import re
from pathlib import Path

from fastp2p.atomic_files import replace_text, replacing
from fastp2p.bench.machine_load import busy_notes
from fastp2p.bench.results_files import ResultsFileError, load_results, what_is_at
from fastp2p.data.errors import counted

MIB = 1024 * 1024


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
    replace_text(markdown_path, markdown(results), durable=False)
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
    """``value * scale`` with ``digits`` decimals; a value below 1 that those would keep to
    fewer than two significant digits gets two ("0.031", "0.0031": a CPU's 0.03 TFLOP/s
    showed as 0.0), less the trailing zeros past ``digits``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    value *= scale
    if value == 0 or abs(value) >= min(1.0, 10.0 ** (1 - digits)):
        return f"{value:,.{digits}f}"
    decimals = 1 - math.floor(math.log10(abs(value)))
    text = f"{value:,.{decimals}f}"
    kept, extra = text[:len(text) - decimals + digits], text[len(text) - decimals + digits:]
    return (kept + extra.rstrip("0")).rstrip(".")


ERROR_CELL_CHARS = 120   # of a failed job's error in its row; the JSON keeps it whole


def _status_cell(row):
    return f"{row['status']}: {_shortened(_one_line(row.get('error') or ''), ERROR_CELL_CHARS)}"


def _one_line(text) -> str:
    """``text``'s lines and runs of spaces joined by one space (a torch message's blank and
    indented lines made runs of them)."""
    return " ".join(str(text).split())


def _shortened(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word's end, and an ellipsis (a cut
    mid-word read "internal stack trace (p"); at ``limit`` itself where no space comes
    before."""
    if len(text) <= limit:
        return text
    kept = text[:limit + 1].rsplit(" ", 1)[0] if " " in text[:limit + 1] else text[:limit]
    return kept + "…"


def _cell(value) -> str:
    """A table cell's text: a "|" or a line break in it (a micro-benchmark's name or shape, an
    error) ended the cell or the row."""
    return _one_line(value).replace("|", "\\|")


def _precision_cell(row) -> str:
    """A row's precision and layout: peers of different precision are compared in one table."""
    if row.get("precision") is None:  # results written before training rows said it
        return "–"
    return row["precision"] + (", channels-last" if row.get("channels_last") else "")


def _table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(map(_cell, line)) + " |" for line in lines]
    return out


def markdown(results: dict) -> str:
    env, config = results["environment"], results["config"]
    ceilings, flops = results.get("ceilings") or {}, results.get("flop_model") or {}
    dirty = " (uncommitted changes)" if env.get("commit_dirty") else ""
    build = f", build {env['build']}" if isinstance(env.get("build"), str) else ""
    lines = [f"# fastp2p benchmark: {env['device']}, {env['date_utc']} UTC, "
             f"commit {env['commit']}{dirty}{build}", ""]
    if not results.get("complete", True):
        lines += ["**Incomplete run**: stopped before every job ran; the rows below are the "
                  "ones that finished.", ""]
    for busy in busy_notes(results):
        lines += [f"**Busy machine**: {busy}.", ""]
    if results["mode"] == "quick":
        lines += ["**Quick mode**: tiny shapes on the CPU, a smoke test of the suite; these "
                  "figures say nothing about GPU speed.", ""]
    if results.get("notes"):
        lines += ["Not run:", "", *(f"- {_one_line(note)}"
                                    for note in results["notes"]), ""]
    versions = ", ".join(f"{key} {env[key]}" for key in ("torch", "triton", "cuda", "cudnn",
                                                         "driver") if env.get(key))
    lines += [f"Versions: {versions}, python {env['python']}.",
              f"Networks: {config['network_description']}; "
              f"{counted(config['steps'], 'timed step')} after "
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
                rows.append([row["peer"], _precision_cell(row), row["batch_size"],
                             _status_cell(row), "", "", "", "", "", "", ""])
                continue
            peak = row.get("peak_memory_bytes")
            rows.append([row["peer"], _precision_cell(row), row["batch_size"],
                         _number(row["images_per_s"]),
                         f"{_number(row['images_per_s_p20'])}–{_number(row['images_per_s_p80'])}",
                         _number(row["step_ms"], 2),
                         _number(peak / MIB, 0) if peak else "–",
                         _number(row.get("mfu"), 1, 100) + ("%" if row.get("mfu") else ""),
                         _number(row.get("fastp2p_ratio"), 2) + (
                             "×" if row.get("fastp2p_ratio") else ""),
                         _number(row.get("setup_seconds"), 1),
                         _number(row.get("kernels_per_step"), 0)])
        lines += _table(["peer", "precision", "batch", "images/s (median)", "p20–p80", "step ms",
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
            case = [row["module"], row["device"] + threads, _precision_cell(row),
                    row.get("mode", "eval"), row["batch_size"]]
            if row["status"] != "ok":
                rows.append(case + [_status_cell(row), "", "", "", ""])
                continue
            rows.append(case + [_number(row["images_per_s"]),
                                f"{_number(row['images_per_s_p20'])}–"
                                f"{_number(row['images_per_s_p80'])}",
                                _number(row["ms"], 3),
                                _number(row.get("fastp2p_ratio"), 2),
                                _number(row.get("setup_seconds"), 1)])
        lines += _table(["module", "device", "precision", "mode", "batch", "images/s",
                         "p20–p80", "ms", "fastp2p ×", "setup s"], rows)
        lines += ["", "fastp2p × = the fastest fastp2p variant's images/s over the row's, same "
                  "device, threads, mode and batch. setup s = building the module plus its "
                  "first call (compilation, graph capture, folding).", ""]

    lines += _end_to_end_lines(results.get("end_to_end", []))

    micro = results.get("micro", [])
    if micro:
        lines += ["## Micro-benchmarks", ""]
        rows = []
        for row in micro:
            label = _micro_case(row)
            if row["status"] != "ok":
                rows.append([row["module"], label, _status_cell(row), "", "", ""])
                continue
            spread = (f"{_number(row.get('p20_ms'), 4)}–{_number(row.get('p80_ms'), 4)}"
                      if "p20_ms" in row else "–")
            rows.append([row["module"], label, _number(row["median_ms"], 4), spread,
                         _number(row.get("gbps")), _copy_share_cell(row.get("copy_fraction"))])
        lines += _table(["module", "case", "median ms", "p20–p80", "GB/s", "of copy"], rows)
        lines += ["", "of copy = GB/s over the device-to-device copy's, measured in the run on "
                  "a 1 GiB copy (from and to memory); cache = faster than that copy: the case's "
                  "tensors stay in cache, where a share of a memory-sized copy says nothing.", ""]
    return "\n".join(lines)


def _micro_case(row) -> str:
    """A micro row's name, then its provider, dtype, shape and mode where the name does not
    already say them ("...nchw: eager eager [1, 128, 64, 64]" repeated the provider). A failed
    or skipped module's row has none of them: ""."""
    name = [] if row.get("name") is None else [str(row["name"])]
    words = set(re.split(r"[\s:,()]+", name[0])) if name else set()
    extras = [str(row[key]) for key in ("provider", "dtype", "shape", "mode")
              if row.get(key) is not None and str(row[key]) not in words]
    return " ".join(name + extras)


def _copy_share_cell(fraction) -> str:
    """A micro row's share of the copy ceiling, or "cache" above it (small tensors stay in
    cache while the ceiling is a memory-sized copy: a CPU run showed 348 %)."""
    if fraction is not None and fraction > 1:
        return "cache"
    return _number(fraction, 0, 100) + ("%" if fraction is not None else "")


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
        per_rank = row.get("per_rank_images_per_s") or []  # optional: missing or null
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
    import matplotlib.pyplot as plt

    # The results' text (device, peers, statuses) shows as written: a pair of '$' in it
    # started mathtext, whose parse error stopped --plot in a traceback
    with plt.rc_context({"text.parse_math": False}):
        figure = training_figure(results)
        try:
            with replacing(path, durable=False) as file:
                figure.savefig(file, format="png", dpi=120)
        finally:
            plt.close(figure)


# Space between a whisker's end and its value label, in points
LABEL_GAP_PT = 3


def training_figure(results: dict):
    """The figure ``plot_training`` saves, laid out so that every whisker, value label and
    the title lie inside it (with one batch size the title ran off both edges; a long p80
    whisker ran past its axis, and its label into the next panel)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    training = results.get("training", [])
    batch_sizes = sorted({row["batch_size"] for row in training})
    peers = list(dict.fromkeys(row["peer"] for row in training))
    figure, axes = plt.subplots(1, len(batch_sizes), squeeze=False, sharey=True,
                                figsize=(2.2 + 3.2 * len(batch_sizes), 0.45 * len(peers) + 1.6))
    panels = []  # (axis, [(label, where its whisker ends)])
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
        labels = []
        for bar, peer, value, upper in zip(bars, peers, values, spread[1]):
            row = by_peer.get(peer)
            text = _number(value) if value else (row["status"] if row else "not run")
            end = max(value + upper, value)
            labels.append((axis.annotate(text, (end, bar.get_y() + bar.get_height() / 2),
                                         xytext=(LABEL_GAP_PT, 0), textcoords="offset points",
                                         va="center", fontsize=8), end))
        axis.set_xlim(0, max((end for _, end in labels), default=0) or 1.0)
        axis.set_title(f"batch {batch}")
        axis.set_xlabel("images/s (median, p20–p80)")
        panels.append((axis, labels))
    axes[0][0].invert_yaxis()  # shared: first peer on top in every panel
    title = figure.suptitle(_chart_title(results), fontsize=10)
    _wrap_to_width(figure, title)
    for _ in range(2):  # the layout moves the panels, which moves the labels: settle twice
        figure.tight_layout()
        for axis, labels in panels:
            _fit_labels(figure, axis, labels)
    return figure


def _chart_title(results: dict) -> str:
    """What was run where, with the markers the table's header carries (uncommitted changes,
    busy machine, incomplete run, quick mode): a chart seen without its table must not pass
    for a clean run's."""
    env = results["environment"]
    network = (results.get("config") or {}).get("network_description")
    dirty = " (uncommitted changes)" if env.get("commit_dirty") else ""
    markers = [marker for marker, shown in (
        ("BUSY MACHINE", busy_notes(results)),
        ("INCOMPLETE RUN", not results.get("complete", True)),
        ("QUICK CPU SMOKE TEST", results["mode"] == "quick")) if shown]
    return (f"pix2pix training throughput{f' ({network})' if network else ''}: "
            f"{env['device']}, {env['date']}, {env['commit']}{dirty}"
            + "".join(f" — {marker}" for marker in markers))


def _wrap_to_width(figure, text, fill=0.96) -> None:
    """Break ``text`` into lines until it is at most ``fill`` of the figure's width."""
    import textwrap

    words = text.get_text()
    renderer = figure.canvas.get_renderer()
    for width in range(len(words), 15, -4):
        text.set_text(textwrap.fill(words, width))
        if text.get_window_extent(renderer).width <= fill * figure.bbox.width:
            return


def _fit_labels(figure, axis, labels, margin=0.03) -> None:
    """Widen the x-limit so that each value label, drawn a few points past its whisker's
    end, ends inside the axis (with ``margin`` of its width to spare). A label is a fixed
    size in pixels while its anchor scales with the limit: an anchor at ``end`` lands at
    ``end / right * W`` pixels, so the label fits when right >= end * W / (W - its width)."""
    renderer = figure.canvas.get_renderer()
    width = axis.bbox.width
    right = axis.get_xlim()[1]
    for label, end in labels:
        anchor = axis.transData.transform((end, 0))[0]
        beyond = label.get_window_extent(renderer).x1 - anchor  # gap + text, in pixels
        room = max(width * (1 - margin) - beyond, 0.2 * width)
        right = max(right, end * width / room)
    axis.set_xlim(0, right)
