"""CPU inference of U-Net-256 (256x256, float32), and the fused C++ norm-act on its layers.

Everything is measured in one process on the same machine, so the ratios are like for like:
- ``unet``: pix2pix's default generator (with dropout) under ``torch.no_grad()``, in eval mode
  (and train mode with ``--modes eval,train``: the reference's test.py keeps the generator in
  train mode, dropout drawing noise): the reference UnetGenerator in NCHW
  and channels-last; the reference with each eval BatchNorm folded into its conv by hand (a
  one-off rewrite of a copy, eval only); torch.compile of the reference (``--compile``: slow to
  build); fastp2p.UNet in NCHW and channels-last (eval: BatchNorm folded into the convs,
  cached; weights packed for oneDNN, fastp2p.ops.onednn_packed), in channels-last with
  folding switched off (eval), in channels-last with packing switched off, and in channels-last
  with the transposed convolutions' phase form switched off. Models are timed in turn
  (A B C A B C ...) so they see the same machine load; medians and minima are reported. Eval
  outputs are checked against the reference's before anything is timed (train outputs, whose
  dropout masks differ, for their shape and finiteness); that first call, not timed with the
  others, is each row's ``first_call_ms`` (torch.compile's build, folding, packing). Per thread
  count (``--threads 2,all``) and batch size (``--batch-sizes 1``).
- ``norm_act``: on every normalized layer's real shape, PyTorch eager BatchNorm (eval) +
  activation (on the decoder side: torch.cat with the skip tensor, then ReLU, as the reference
  runs it) against fastp2p's ``norm_act`` / ``norm_act_concat`` (C++ backend) as
  fastp2p.UNet calls them without autograd (its layers when folding is off).

Run: ``python benchmarks/bench_cpu_inference.py [--quick] [--json FILE]``; or call
``collect(quick)`` for the rows.
"""
import argparse
import copy
import datetime
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import fastp2p
from fastp2p.bench.environment import git_commit, package_checkout
from fastp2p.build_fingerprint import build_fingerprint
from fastp2p.cpu_info import cpu_model
from fastp2p.nn.folding import folding_disabled
from fastp2p.ops.deconv_phases import phases_disabled
from fastp2p.ops.onednn_packed import packing_disabled
from fastp2p.ops import backend_name_for, norm_act, norm_act_concat
from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.option_types import positive_int
from fastp2p.reference import UnetGenerator

# The transposed convolutions' forms are timed in this run (not taken from a file an earlier,
# perhaps busier, run wrote): the rows describe this run's machine (fastp2p.ops.remembered_forms).
os.environ.setdefault("FASTP2P_CPU_DECONV", "measure")

# (channels, spatial size, side) of every normalized conv output of U-Net-256 (ngf=64) at batch 1.
# Encoder norms feed LeakyReLU(0.2); decoder norms feed ReLU and are concatenated after the skip.
LAYERS = [(128, 64, "down"), (256, 32, "down"), (512, 16, "down"), (512, 8, "down"),
          (512, 4, "down"), (512, 2, "down"),
          (512, 2, "up"), (512, 4, "up"), (512, 8, "up"), (512, 16, "up"), (256, 32, "up"),
          (128, 64, "up"), (64, 128, "up")]
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
# U-Net-256 as pix2pix builds its generator by default: with dropout, which train mode (the
# reference's test.py) runs as noise; in eval mode dropout is the identity.
NETWORK = dict(input_nc=3, output_nc=3, num_downs=8, ngf=64, use_dropout=True)


def interleaved_ms(functions, repeats, warmup=1):
    """{name: (median, min, max)} in ms, timing the functions in turn (A B A B ...) so that they
    see the same machine load; on a shared machine `min` is the steadier figure."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(t), min(t), max(t)) for name, t in times.items()}



def _code_version() -> dict:
    """The commit and dirty state of the checkout the imported fastp2p comes from: the code
    timed, which need not be the checkout this script lives in. Where there is none (an
    installed wheel), "unknown" and where the imported package lives."""
    commit, dirty = git_commit(package_checkout())
    version = {"commit": commit, "dirty": dirty}
    if commit == "unknown":
        version["fastp2p_file"] = fastp2p.__file__
    return version


def _environment():
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"date_utc": now.strftime("%Y-%m-%d %H:%M:%S"), "device": "cpu", "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "fastp2p": fastp2p.__version__,
            "build": build_fingerprint(), "cpp_backend": cpp_backend.available(), **_code_version(),
            "load_average": [round(load, 2) for load in os.getloadavg()]}


def fold_eval_batchnorm(model):
    """A copy of `model` with every eval BatchNorm2d that directly follows a conv folded into
    that conv's weight and bias (an inference-only rewrite: the norm disappears)."""
    model = copy.deepcopy(model).eval()
    for sequential in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        layers = list(sequential)
        for i in range(len(layers) - 1):
            conv, norm = layers[i], layers[i + 1]
            if not isinstance(conv, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) or \
                    not isinstance(norm, torch.nn.BatchNorm2d):
                continue
            with torch.no_grad():
                scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                # Output channels are dim 0 of a Conv2d weight and dim 1 of a ConvTranspose2d's.
                shape = (-1, 1, 1, 1) if isinstance(conv, torch.nn.Conv2d) else (1, -1, 1, 1)
                conv.weight.mul_(scale.view(shape))
                conv.bias = torch.nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            sequential[i + 1] = torch.nn.Identity()
    return model


def _unet_models(compile_reference: bool, train: bool):
    """{(model, layout): (module, memory format)} with the same weights; the reference first."""
    torch.manual_seed(0)
    reference = fastp2p.init_weights(UnetGenerator(**NETWORK), "normal", 0.02)
    with torch.no_grad():  # running statistics away from their initial 0 / 1
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    ours = fastp2p.UNet(**NETWORK)
    ours.load_state_dict(reference.state_dict())
    cl = torch.channels_last

    def copy_of(model, layout=torch.contiguous_format):
        return copy.deepcopy(model).train(train).to(memory_format=layout)

    models = {("reference", "nchw"): (copy_of(reference), torch.contiguous_format),
              ("reference", "channels_last"): (copy_of(reference, cl), cl)}
    if not train:
        models[("reference, eval BatchNorm folded into the convs", "channels_last")] = (
            fold_eval_batchnorm(reference).to(memory_format=cl), cl)
    if compile_reference:
        models[("reference, torch.compile", "channels_last")] = (
            torch.compile(copy_of(reference, cl)), cl)
    models[("fastp2p.UNet", "nchw")] = (copy_of(ours), torch.contiguous_format)
    models[("fastp2p.UNet", "channels_last")] = (copy_of(ours, cl), cl)
    if not train:
        models[(UNFOLDED, "channels_last")] = (copy_of(ours, cl), cl)
    models[(UNPACKED, "channels_last")] = (copy_of(ours, cl), cl)
    models[(NO_PHASES, "channels_last")] = (copy_of(ours, cl), cl)
    return models


UNFOLDED = "fastp2p.UNet, folding off"
UNPACKED = "fastp2p.UNet, packed weights off"
NO_PHASES = "fastp2p.UNet, deconvolution phases off"
# The rows that run inside a switch: (its model name, the context manager).
SWITCHED_OFF = {UNFOLDED: folding_disabled, UNPACKED: packing_disabled,
                NO_PHASES: phases_disabled}


def bench_unet(repeats, *, batch_size=1, train=False, compile_reference=False):
    """fastp2p.UNet (the C++ backend's fused norm-act on CPU tensors) against the reference."""
    image = torch.rand(batch_size, 3, 256, 256,
                       generator=torch.Generator().manual_seed(1)) * 2 - 1
    models = _unet_models(compile_reference, train)
    runs = {}
    for (model, layout), (module, memory_format) in models.items():
        x = image.contiguous(memory_format=memory_format)
        if model in SWITCHED_OFF:
            def run(module=module, x=x, switched_off=SWITCHED_OFF[model]):
                with switched_off():
                    return module(x)
        else:
            run = functools.partial(module, x)
        runs[(model, layout)] = run
    with torch.no_grad():
        first_calls = _first_calls(runs)  # also each model's warm-up
        _check_outputs({key: output for key, (output, _) in first_calls.items()}, train)
        timings = interleaved_ms(runs, repeats, warmup=0)
    baseline = timings[("reference", "nchw")]
    baseline_cl = timings[("reference", "channels_last")]
    mode = "train" if train else "eval"
    return [{"name": f"unet256 inference {mode} batch {batch_size}: {model}, {layout}",
             "bench": "unet", "model": model, "layout": layout, "mode": mode,
             "batch_size": batch_size, "dropout": NETWORK["use_dropout"],
             "backend": backend_name_for(torch.device("cpu")),
             "first_call_ms": first_calls[(model, layout)][1],
             "median_ms": ms, "min_ms": low, "max_ms": high,
             "speedup_vs_reference_nchw": baseline[0] / ms,
             "speedup_vs_reference_channels_last": baseline_cl[0] / ms,
             "speedup_of_min_vs_reference_nchw": baseline[1] / low}
            for (model, layout), (ms, low, high) in timings.items()]


def _first_calls(runs) -> dict:
    """{(model, layout): (output, ms)} of each model's first call, which the timed calls do
    not show: torch.compile's build, folding, weight packing, measuring the deconvolution
    forms, oneDNN's primitive creation."""
    first_calls = {}
    for key, run in runs.items():
        start = time.perf_counter()
        output = run()
        first_calls[key] = (output, (time.perf_counter() - start) * 1e3)
    return first_calls


def _check_outputs(outputs, train):
    """Eval: every model's output (``outputs``: {(model, layout): tensor}) is the reference's.
    Train: dropout draws each model's own random masks (fastp2p's fused kernels do not follow
    torch's dropout stream), so each output is only checked to have the reference's shape and
    to be finite."""
    expected = outputs[("reference", "nchw")]
    for (model, layout), output in outputs.items():
        where = f"{model} ({layout})"
        if not train:
            torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f"{where}: {m}")
        elif output.shape != expected.shape or not torch.isfinite(output).all():
            raise AssertionError(f"{where}: train-mode output of shape {tuple(output.shape)} "
                                 f"(want {tuple(expected.shape)}) or not finite")


def bench_norm_act(repeats, layout):
    """Each normalized layer as the reference module runs it (eager BatchNorm, activation, and
    on the decoder side the concatenation with the skip then ReLU) against the fused op as
    fastp2p.UNet calls it (``norm_act`` / ``norm_act_concat``: no autograd recorded, so the
    planned launch whose host cost NOTES.md measures), with BatchNorm's running statistics."""
    memory_format = FORMATS[layout]
    rows = []
    for channels, size, side in LAYERS:
        gen = torch.Generator().manual_seed(channels + size)
        x = torch.randn(1, channels, size, size, generator=gen).to(memory_format=memory_format)
        skip = torch.randn(1, channels, size, size, generator=gen).to(memory_format=memory_format)
        weight = torch.rand(channels, generator=gen) + 0.5
        bias = torch.randn(channels, generator=gen)
        mean = torch.randn(channels, generator=gen) * 0.1
        var = torch.rand(channels, generator=gen) + 0.5
        norm = dict(norm="batch", training=False, eps=1e-5)

        def eager():
            y = F.batch_norm(x, mean, var, weight, bias, training=False, eps=1e-5)
            return F.relu(torch.cat([skip, y], 1)) if side == "up" else F.leaky_relu(y, 0.2)

        def fused():
            if side == "up":
                return norm_act_concat(skip, x, weight, bias, mean, var, activation="relu",
                                       **norm)
            return norm_act(x, weight, bias, mean, var, activation="leaky_relu", slope=0.2,
                            **norm)

        torch.testing.assert_close(fused(), eager(), rtol=1e-5, atol=1e-5)  # same numbers first
        timings = interleaved_ms({"eager": eager, "fused": fused}, repeats)
        op = "batchnorm-eval+act" + ("+cat" if side == "up" else "")
        # what each must at least move: read x (and skip), write the output
        moved = (2 * x.numel() + (2 * skip.numel() if side == "up" else 0)) * 4
        for provider, (ms, low, high) in timings.items():
            rows.append({"name": f"{op} {channels}x{size}x{size} {layout}: {provider}",
                         "bench": "norm_act", "provider": provider, "op": op,
                         "layout": layout, "shape": [1, channels, size, size], "bytes": moved,
                         "median_ms": ms, "min_ms": low, "max_ms": high,
                         "speedup_vs_eager": timings["eager"][0] / ms})
    return rows


def _thread_counts(text: str) -> list:
    """"2,all" -> [2, os.cpu_count()], each once."""
    counts = [os.cpu_count() if item.strip() == "all" else int(item)
              for item in text.split(",") if item.strip()]
    return list(dict.fromkeys(counts))


def thread_counts_option(text: str) -> str:
    """--threads: comma-separated positive counts or 'all' (argparse ``type=``)."""
    try:
        counts = _thread_counts(text)
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"takes comma-separated positive integers or 'all', "
                                         f"got {text!r}")
    return text


def batch_sizes_option(text: str) -> tuple:
    """--batch-sizes: comma-separated positive integers (argparse ``type=``)."""
    try:
        sizes = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"takes comma-separated positive integers, got "
                                         f"{text!r}")
    return sizes


def collect(quick: bool, **options) -> list:
    """The rows of ``iter_rows`` (the micro-benchmark contract of ``fastp2p bench``)."""
    return list(iter_rows(quick, **options))


def iter_rows(quick: bool, *, threads=None, batch_sizes=(1,), modes=("eval",),
              compile_reference=False, layers=True, unet_repeats=None):
    """Benchmark rows, each as soon as it is measured (so an interrupted run keeps them): dicts
    with ``name`` and ``median_ms``, each recording its sample count ``repeats`` and ``quick``.
    quick: fewer repeats; ``threads``: e.g. "2,all" (default: the current thread count when
    quick, else "2,all"); ``unet_repeats``: the U-Net samples per model (default: 2 when quick,
    else 50), honoured under quick too."""
    if not cpp_backend.available():
        raise RuntimeError(f"the C++ backend is unavailable: {cpp_backend.unavailable_reason()}")
    default_unet_repeats, layer_repeats = (2, 5) if quick else (50, 50)
    unet_repeats = unet_repeats or default_unet_repeats
    if threads is None:
        counts = [torch.get_num_threads()] if quick else _thread_counts("2,all")
    else:
        counts = _thread_counts(threads)
    initial = torch.get_num_threads()
    try:
        for count in counts:
            torch.set_num_threads(count)
            environment = {**_environment(), "quick": quick}
            for batch_size in batch_sizes:
                for mode in modes:
                    unet = bench_unet(unet_repeats, batch_size=batch_size,
                                      train=mode == "train", compile_reference=compile_reference)
                    yield from ({**environment, **row, "repeats": unet_repeats} for row in unet)
            if layers:
                for layout in FORMATS:
                    yield from ({**environment, **row, "repeats": layer_repeats}
                                for row in bench_norm_act(layer_repeats, layout))
    finally:
        torch.set_num_threads(initial)


def _print_table(rows):
    for row in rows:
        if row["bench"] == "unet":
            print(f"unet {row['threads']} threads {row['mode']} batch {row['batch_size']}  "
                  f"{row['model']:<48} {row['layout']:<14} median {row['median_ms']:7.1f} ms"
                  f" (min {row['min_ms']:.1f})  {row['speedup_vs_reference_nchw']:.2f}x vs "
                  f"reference NCHW, {row['speedup_vs_reference_channels_last']:.2f}x vs "
                  f"reference channels-last (of min {row['speedup_of_min_vs_reference_nchw']:.2f}x"
                  f" vs NCHW)")
    layers = [r for r in rows if r["bench"] == "norm_act"]
    if not layers:
        return
    print(f"\n{'layout':<14} {'shape':<20} {'op':<24} {'eager ms':>9} {'fused ms':>9} "
          f"{'speedup':>8}")
    for eager, fused in zip(layers[::2], layers[1::2]):
        print(f"{eager['layout']:<14} {str(tuple(eager['shape'])):<20} {eager['op']:<24} "
              f"{eager['median_ms']:9.3f} {fused['median_ms']:9.3f} "
              f"{fused['speedup_vs_eager']:7.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats (a smoke run), at the current thread count unless "
                             "--threads is given")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the rows to FILE as JSON (each with complete: false "
                             "when Ctrl-C stopped the run); an existing FILE is refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json FILE")
    parser.add_argument("--threads", type=thread_counts_option, default=None,
                        help="comma-separated torch (and fastp2p._C) thread counts, 'all' = every "
                             "core (default: 2,all, or with --quick the current count; each "
                             "count once)")
    parser.add_argument("--batch-sizes", type=batch_sizes_option, default=(1,),
                        help="comma-separated positive U-Net batch sizes (default: 1)")
    parser.add_argument("--modes", default="eval",
                        help="comma-separated subset of eval,train (default: eval)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile of the reference (minutes to build on a "
                             "small CPU)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="U-Net samples per model, interleaved, with or without --quick "
                             "(default: 50, DESIGN.md's benchmark protocol, or 2 with --quick; "
                             "fewer let a reference with two modes of timing, as at 2 "
                             "threads on a 2-core Xeon, land its median on either)")
    parser.add_argument("--no-layers", action="store_true",
                        help="skip the per-layer norm-act comparison")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or set(modes) - {"eval", "train"}:
        parser.error(f"--modes takes eval and/or train, got {args.modes!r}")
    if args.json and Path(args.json).exists() and not args.overwrite:
        parser.error(f"--json {args.json} exists: pass --overwrite to replace it")
    rows, complete = [], True
    try:
        for row in iter_rows(args.quick, threads=args.threads, batch_sizes=args.batch_sizes,
                             modes=modes, compile_reference=args.compile,
                             layers=not args.no_layers, unet_repeats=args.repeats):
            rows.append(row)
    except KeyboardInterrupt:  # keep what was measured: a long run's first hour is not lost
        complete = False
    command = [Path(__file__).name, *argv]  # how the rows were made, in each row
    rows = [{**row, "argv": command, "complete": complete} for row in rows]
    if rows:  # an empty file would only hide that nothing was measured
        _print_rows(rows)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=1)
    if not complete:
        saved = (f", written to {args.json} with complete: false" if args.json and rows
                 else "")
        print(f"interrupted: {len(rows)} row(s) measured{saved}", file=sys.stderr)
        return 130
    return 0


def _print_rows(rows):
    first = rows[0]
    print(f"device: cpu ({first['cpu']}, {first['cpu_count']} cores), load average "
          f"{first['load_average']}, torch {first['torch']}, commit {first['commit']}"
          f"{' (dirty)' if first['dirty'] else ''}\n")
    _print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
