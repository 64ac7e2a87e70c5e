"""The per-layer conv choice table (``fastp2p/ops/backends/conv_choice.json``, read by
``fastp2p.ops.backends.conv_choice``) from the rows of ``benchmarks/conv_layer_timing.py``:
the networks' conv layers, each layer's table entry, the decision and the writing. Pure (no
GPU), so CPU tests check them.

The rule, per direction (``conv_choice.MODES``: ``forward`` rows, timed without a gradient,
decide inference; ``forward+backward`` rows decide training): a layer
(``conv_choice.layer_key``: the norm after it, dtype, input, weight, stride, padding,
transposed) goes to the fused convolution in a direction only when, in every row of that
direction that measured it, the fused provider's p80 is below cuDNN + norm-act's p20 — faster by
more than either's run-to-run spread. A batch-norm network's ``forward`` rows come in both of
its modes (a row's ``network_mode``, "train" or "eval": conv_layer_timing's docstring), since
the networks route an inference call by the forward list either way: the layer must win in each.
A key shared by both networks' norms (a layer with no norm after it whose prologue applies the
previous layer's batch or instance norm) must win under each (conv_layer_timing writes a table
only from a run of both norms); a row where a provider failed never wins. Layers not listed keep
today's path. The table names the ``device`` it was measured on (``conv_choice.device_name``):
it routes layers on that GPU model only.

Three providers are timed (``PROVIDERS``): ``cudnn`` (cuDNN conv + norm-act, today's path),
``fused`` (the fused Triton convolution) and ``cudnn_graph`` (cuDNN runtime-fusion graphs,
``fastp2p.ops.backends.cudnn_graphs``). The table's ``fastest`` names, per layer key and mode,
the provider with the lowest median in every row of that key and mode (None where rows
disagree or none was timed); a row records a provider that could not run as
``<provider>_error`` ("not installed: ...", "unsupported: ..." or the error). Only ``cudnn``
and ``fused`` are routed (``ROUTED``): the networks never call the cuDNN graphs, so a layer
whose measured fastest is ``cudnn_graph`` still runs the rule's choice between the other two.
"""
import json
from collections import defaultdict
from pathlib import Path

from fastp2p.atomic_files import replace_text
from fastp2p.ops.backends.conv_choice import FORMAT, MODES, layer_key

PROVIDERS = ("cudnn", "fused", "cudnn_graph")
ROUTED = ("cudnn", "fused")
NOT_ROUTED = ("cudnn_graph is measured, never routed: no network calls the cuDNN fusion graphs "
              "before a GPU run has checked them (tests/conv_norm_act/test_cudnn_graphs_cuda.py)")
RULE = ("fused in a direction (forward: inference, a batch-norm network's rows in train and "
        "eval mode; forward+backward: training) where every row of the layer in that direction "
        "has fused p80 < cudnn+norm_act p20 (CUDA-graph replays)")
KERNEL, PADDING = 4, 1


def unet_layers(ngf=64, num_downs=8, side=256, input_nc=3, output_nc=3) -> list:
    """The U-Net's convs as (name, transposed, stride, sources (channels of each K-range),
    C_out, input side, prologue activation, per-source whether a norm precedes, whether one
    follows). Down conv i reads level i's input; up conv i reads (skip: down i's output, up
    i+1's output), the innermost up only down num_downs-1's output."""
    channels = [ngf * min(2 ** i, 8) for i in range(num_downs)]  # down i's output
    innermost = num_downs - 1
    layers = [("unet.down0", False, 2, (input_nc,), channels[0], side, "none", (False,),
               False)]
    layers += [(f"unet.down{i}", False, 2, (channels[i - 1],), channels[i], side >> i,
                "leaky_relu", (i > 1,), i < innermost) for i in range(1, num_downs)]
    layers.append((f"unet.up{innermost}", True, 2, (channels[innermost],),
                   channels[innermost - 1], side >> num_downs, "relu", (False,), True))
    layers += [(f"unet.up{i}", True, 2, (channels[i], channels[i]),
                channels[i - 1] if i else output_nc, side >> (i + 1), "relu", (i > 0, True),
                i > 0) for i in range(innermost - 1, -1, -1)]
    return layers


def patchgan_layers(ndf=64, n_layers=3, side=256, input_nc=6) -> list:
    """The PatchGAN's convs, as ``unet_layers``: n_layers stride-2 convs (the first without a
    norm), a stride-1 conv with a norm, the stride-1 logit conv."""
    widths = [ndf * min(2 ** i, 8) for i in range(n_layers + 1)]
    layers = [("patchgan.conv0", False, 2, (input_nc,), ndf, side, "none", (False,), False)]
    layers += [(f"patchgan.conv{i}", False, 2, (widths[i - 1],), widths[i], side >> i,
                "leaky_relu", (i > 1,), True) for i in range(1, n_layers)]
    tail = side >> n_layers
    layers.append((f"patchgan.conv{n_layers}", False, 1, (widths[n_layers - 1],),
                   widths[n_layers], tail, "leaky_relu", (n_layers > 1,), True))
    layers.append((f"patchgan.conv{n_layers + 1}", False, 1, (widths[n_layers],), 1, tail - 1,
                   "leaky_relu", (True,), False))
    return layers


UNET = unet_layers()
PATCHGAN = patchgan_layers()


def layer_entry(layer, batch: int, norm: str, dtype: str) -> dict:
    """The table entry (conv_choice's fields) of ``layer`` at ``batch`` in a network whose norm
    layers are ``norm``: the entry's norm is the one after this conv ("none" where none
    follows); a transposed conv's input is the concatenation of its sources."""
    _, transposed, stride, sources, c_out, side, _, _, followed = layer
    c_in = sum(sources)
    entry = dict(norm=norm if followed else "none", dtype=dtype, input=[batch, c_in, side, side],
                 weight=[c_in, c_out, KERNEL, KERNEL] if transposed
                 else [c_out, c_in, KERNEL, KERNEL], stride=stride, padding=PADDING)
    if transposed:
        entry["transposed"] = True
    return entry


def entry_key(entry: dict) -> tuple:
    """conv_choice.layer_key of a table entry, as conv_choice.fused_layers reads it."""
    return layer_key(entry["norm"], entry["dtype"], entry["input"], entry["weight"],
                     entry["stride"], entry["padding"], entry.get("transposed", False))


def fused_wins(row: dict) -> bool:
    """Whether one row says fused in its direction: both timed, fused p80 < peer p20."""
    cudnn, fused = row.get("cudnn"), row.get("fused")
    return cudnn is not None and fused is not None and fused["p80_ms"] < cudnn["p20_ms"]


def fastest_provider(row: dict):
    """The provider with the lowest median in one row, or None when none was timed."""
    timed = {p: row[p]["median_ms"] for p in PROVIDERS if row.get(p) is not None}
    return min(timed, key=timed.get) if timed else None


def fastest_by_layer(rows) -> list:
    """Per table key and mode: {entry, mode, provider}, provider the fastest in every row of
    that key and mode (both networks' norms, for a shared key, and for a batch-norm network's
    forward both network modes, train and eval), else None."""
    winners, entries = defaultdict(set), {}
    for row in rows:
        group = (entry_key(row["entry"]), row["mode"])
        winners[group].add(fastest_provider(row))
        entries[group] = row["entry"]
    return [dict(entry=entries[group], mode=group[1],
                 provider=next(iter(winners[group])) if len(winners[group]) == 1 else None)
            for group in sorted(winners)]


def choice_table(rows, device: str, environment=None) -> dict:
    """The table (format ``conv_choice.FORMAT``): ``device`` (``conv_choice.device_name`` of
    the GPU the rows were measured on: the table routes layers there only); ``fused``, per
    direction (``conv_choice.MODES``), the entries the rule gives to the fused convolution
    (sorted); ``rule``, the run's ``commit``/``torch``/``triton``, ``fastest``
    (fastest_by_layer), ``routed`` / ``not_routed`` and every row (``measured``: layer,
    network norm and mode, batch, mode, entry, each provider's median/p20/p80 ms or its error)
    are for the record. Rows: dicts with ``layer``, ``network_norm``, ``network_mode``,
    ``batch``, ``mode``, ``entry`` and ``cudnn`` / ``fused`` / optionally ``cudnn_graph``
    (``{"median_ms", "p20_ms", "p80_ms"}`` or None)."""
    verdicts = {mode: defaultdict(list) for mode in MODES}
    entries = {}
    for row in rows:
        key = entry_key(row["entry"])
        verdicts[row["mode"]][key].append(fused_wins(row))
        entries[key] = row["entry"]
    environment = environment or {}
    return {"format": FORMAT, "device": device, "commit": environment.get("commit"),
            "torch": environment.get("torch"), "triton": environment.get("triton"),
            "rule": RULE,
            "fused": {mode: [entries[key] for key in sorted(verdicts[mode])
                             if all(verdicts[mode][key])] for mode in MODES},
            "fastest": fastest_by_layer(rows), "routed": list(ROUTED), "not_routed": NOT_ROUTED,
            "measured": list(rows)}


def write_table(table: dict, path: Path) -> None:
    """Replace ``path`` with ``table`` atomically (a reader sees the old or the new table)."""
    replace_text(Path(path), json.dumps(table, indent=1) + "\n")
