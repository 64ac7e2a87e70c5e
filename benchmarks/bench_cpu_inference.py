"""CPU inference of U-Net-256 (batch 1, 256x256, float32), and the fused C++ norm-act on its layers.

Everything is measured in one process on the same machine, so the ratios are like for like:
- ``unet``: the reference UnetGenerator (batch norm, eval, no_grad) in NCHW and channels-last,
  the same with each eval BatchNorm folded into its conv (an inference-only rewrite fastp2p does
  not do), and fastp2p.UNet (the C++ backend on CPU tensors) in NCHW and channels-last; every
  peer is checked against the reference output before it is timed;
- ``norm_act``: on every normalized layer's real shape, PyTorch eager BatchNorm (eval) +
  activation (+ torch.cat with the skip tensor on the decoder side) against fastp2p._C's fused
  norm-act writing straight into its slice of a preallocated concatenation buffer.

Run: ``python benchmarks/bench_cpu_inference.py [--quick] [--json FILE]``; or call
``collect(quick)`` for the rows.
"""
import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import fastp2p
from fastp2p.bench.environment import find_checkout, git_commit
from fastp2p.ops import backend_name_for
from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.reference import UnetGenerator

# (channels, spatial size, side) of every normalized conv output of U-Net-256 (ngf=64) at batch 1.
# Encoder norms feed LeakyReLU(0.2); decoder norms feed ReLU and are concatenated after the skip.
LAYERS = [(128, 64, "down"), (256, 32, "down"), (512, 16, "down"), (512, 8, "down"),
          (512, 4, "down"), (512, 2, "down"),
          (512, 2, "up"), (512, 4, "up"), (512, 8, "up"), (512, 16, "up"), (256, 32, "up"),
          (128, 64, "up"), (64, 128, "up")]
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


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


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment():
    commit, dirty = git_commit(find_checkout(Path(__file__).resolve().parent))
    return {"device": "cpu", "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "fastp2p": fastp2p.__version__,
            "cpp_backend": cpp_backend.available(), "commit": commit, "dirty": dirty}


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


def bench_unet(repeats):
    """fastp2p.UNet (the C++ backend's fused norm-act on CPU tensors) against the reference."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 256, 256) * 2 - 1
    image_cl = image.to(memory_format=torch.channels_last)
    reference = UnetGenerator(3, 3, 8, ngf=64).eval()
    reference_cl = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    ours = fastp2p.UNet(3, 3, 8, ngf=64).eval()
    ours.load_state_dict(reference.state_dict())
    ours_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    folded = fold_eval_batchnorm(reference).to(memory_format=torch.channels_last)
    runs = {("reference", "nchw"): lambda: reference(image),
            ("reference", "channels_last"): lambda: reference_cl(image_cl),
            ("reference, eval BatchNorm folded into the convs", "channels_last"):
                lambda: folded(image_cl),
            ("fastp2p.UNet", "nchw"): lambda: ours(image),
            ("fastp2p.UNet", "channels_last"): lambda: ours_cl(image_cl)}
    with torch.no_grad():
        expected = reference(image)
        for (model, layout), run in runs.items():  # the same numbers before any timing
            torch.testing.assert_close(run(), expected, rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f"{model} ({layout}): {m}")
        timings = interleaved_ms(runs, repeats)
    baseline = timings[("reference", "nchw")]
    return [{"name": f"unet256 inference: {model}, {layout}", "bench": "unet", "model": model,
             "layout": layout, "backend": backend_name_for(torch.device("cpu")),
             "median_ms": ms, "min_ms": low, "max_ms": high,
             "speedup_vs_reference_nchw": baseline[0] / ms,
             "speedup_of_min_vs_reference_nchw": baseline[1] / low}
            for (model, layout), (ms, low, high) in timings.items()]


def bench_norm_act(repeats, layout):
    """PyTorch eager norm + activation (+ cat) against the fused C++ op on each layer's shape."""
    memory_format = FORMATS[layout]
    rows = []
    for channels, size, side in LAYERS:
        gen = torch.Generator().manual_seed(channels + size)
        x = torch.randn(1, channels, size, size, generator=gen).to(memory_format=memory_format)
        skip = torch.randn(1, channels, size, size, generator=gen).to(memory_format=memory_format)
        weight, bias = torch.rand(channels, generator=gen) + 0.5, torch.randn(channels, generator=gen)
        mean, var = torch.randn(channels, generator=gen) * 0.1, torch.rand(channels, generator=gen) + 0.5
        activation = "relu" if side == "up" else "leaky_relu"
        out_channels = 2 * channels if side == "up" else channels
        buffer = torch.empty(1, out_channels, size, size).to(memory_format=memory_format)
        buffer[:, :out_channels - channels] = skip[:, :out_channels - channels]

        def eager():
            y = F.batch_norm(x, mean, var, weight, bias, training=False, eps=1e-5)
            y = F.relu(y) if side == "up" else F.leaky_relu(y, 0.2)
            return torch.cat([skip, y], 1) if side == "up" else y

        def fused():
            cpp_backend.norm_act_fwd(x, weight, bias, mean, var, buffer, out_channels - channels,
                                     norm="batch", training=False, momentum=0.1, eps=1e-5,
                                     activation=activation, slope=0.2, dropout_p=0.0, seed=0,
                                     offset=0)

        fused()
        torch.testing.assert_close(buffer, eager(), rtol=1e-5, atol=1e-5)  # same numbers first
        timings = interleaved_ms({"eager": eager, "fused": fused}, repeats)
        op = "batchnorm-eval+act" + ("+cat" if side == "up" else "")
        # what each must at least move: read x (and skip), write the output
        moved = (x.numel() + (skip.numel() if side == "up" else 0) + buffer.numel()) * 4
        for provider, (ms, low, high) in timings.items():
            rows.append({"name": f"{op} {channels}x{size}x{size} {layout}: {provider}",
                         "bench": "norm_act", "provider": provider, "op": op,
                         "layout": layout, "shape": [1, channels, size, size], "bytes": moved,
                         "median_ms": ms, "min_ms": low, "max_ms": high,
                         "speedup_vs_eager": timings["eager"][0] / ms})
    return rows


def collect(quick: bool) -> list:
    """Benchmark rows (dicts with ``name`` and ``median_ms``); quick: fewer repeats."""
    environment = _environment()
    if not environment["cpp_backend"]:
        raise RuntimeError(f"the C++ backend is unavailable: {cpp_backend.unavailable_reason()}")
    unet_repeats, layer_repeats = (2, 5) if quick else (15, 50)
    rows = bench_unet(unet_repeats)
    for layout in FORMATS:
        rows += bench_norm_act(layer_repeats, layout)
    return [{**environment, **row} for row in rows]


def _print_table(rows):
    for row in rows:
        if row["bench"] == "unet":
            print(f"unet  {row['model']:<48} {row['layout']:<14} median {row['median_ms']:7.1f} ms"
                  f" (min {row['min_ms']:.1f})  {row['speedup_vs_reference_nchw']:.2f}x "
                  f"(of min {row['speedup_of_min_vs_reference_nchw']:.2f}x) vs reference NCHW")
    print(f"\n{'layout':<14} {'shape':<20} {'op':<24} {'eager ms':>9} {'fused ms':>9} {'speedup':>8}")
    layers = [r for r in rows if r["bench"] == "norm_act"]
    for eager, fused in zip(layers[::2], layers[1::2]):
        print(f"{eager['layout']:<14} {str(tuple(eager['shape'])):<20} {eager['op']:<24} "
              f"{eager['median_ms']:9.3f} {fused['median_ms']:9.3f} "
              f"{fused['speedup_vs_eager']:7.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    parser.add_argument("--threads", type=int, help="torch (and fastp2p._C) threads; default: torch's")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = collect(args.quick)
    print(f"device: cpu ({rows[0]['cpu']}, {rows[0]['cpu_count']} cores), {rows[0]['threads']} "
          f"threads, torch {rows[0]['torch']}, commit {rows[0]['commit']}"
          f"{' (dirty)' if rows[0]['dirty'] else ''}\n")
    _print_table(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
