"""U-Net-256's transposed convolutions in each CPU float32 inference form, layer by layer.

On every decoder layer's shape (ngf=64, 256x256 images), each form writes relu(deconv(x)) into
one channels-last output buffer, as the decoder does with its concatenation and as
fastp2p.ops.conv_transpose.cpu_inference_form times them: "torch" (F.conv_transpose2d with a
channels-last weight, reordered by oneDNN on every call: what the reference module runs, then a
relu copy), "gemm" (GEMM + C++ col2im), "onednn" (oneDNN's deconvolution, weight packed once) and
"phases" (the four output phases as one packed convolution, interleaved:
fastp2p.ops.deconv_phases). Forms are timed in turn (A B C D A B C D ...), medians and minima.

Run: ``python -m benchmarks.bench_cpu_deconv_forms [--threads 1,2] [--batch-sizes 1,16]``; or
call ``collect(quick)`` for the rows (``fastp2p bench``'s micro-benchmark contract).
"""
import argparse
import functools
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.bench_cpu_inference import _environment, _thread_counts, interleaved_ms
from fastp2p.ops import deconv_phases
from fastp2p.ops.conv_transpose import LAYOUT_OF_FORM, conv_transpose2d_into
from fastp2p.ops.stand_ins import stand_in
from fastp2p.option_types import positive_int

# (in, out channels, input size) of U-Net-256's transposed convolutions, innermost first.
LAYERS = [(512, 512, 1), (1024, 512, 2), (1024, 512, 4), (1024, 512, 8), (1024, 256, 16),
          (512, 128, 32), (256, 64, 64), (128, 3, 128)]


def _torch_form(conv, weight, x, out):
    """What the reference module runs: oneDNN with a plain weight, then a relu copy."""
    return deconv_phases.write(F.conv_transpose2d(x, weight, conv.bias, 2, 1), out, "relu")


def bench_layer(c_in, c_out, size, batch_size, repeats):
    torch.manual_seed(c_in + size)
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    x = torch.randn(batch_size, c_in, size, size).contiguous(memory_format=torch.channels_last)
    out = torch.empty(deconv_phases.output_shape(conv, x), memory_format=torch.channels_last)
    weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
    runs = {"torch": functools.partial(_torch_form, conv, weight, x, out)}
    for form, layout in LAYOUT_OF_FORM.items():
        runs[form] = functools.partial(conv_transpose2d_into,
                                       stand_in(conv, conv.weight, conv.bias, layout, x.shape),
                                       x, out, "relu")
    with torch.no_grad():
        expected = runs["torch"]().clone()
        for form, run in runs.items():  # the same numbers first, each into a poisoned buffer
            out.fill_(float("nan"))
            torch.testing.assert_close(run(), expected, rtol=1e-4, atol=1e-4,
                                       msg=lambda m: f"{form}: {m}")
        timings = interleaved_ms(runs, repeats)
    return [{"bench": "deconv_form", "layer": [c_in, c_out, size], "batch_size": batch_size,
             "form": form, "median_ms": ms, "min_ms": low, "max_ms": high,
             "name": f"deconv {c_in}->{c_out} on {size}x{size} batch {batch_size}: {form}"}
            for form, (ms, low, high) in timings.items()]


def collect(quick: bool, *, threads=None, batch_sizes=(1, 16), repeats=10,
            printing=False) -> list:
    """Rows of every layer, batch size and thread count (``threads``: a "1,2"-style string;
    None: the current count). ``quick``: the two innermost layers at batch 1, two samples."""
    layers, counts = LAYERS, [torch.get_num_threads()] if threads is None else \
        _thread_counts(threads)
    if quick:
        layers, batch_sizes, repeats = LAYERS[:2], (1,), 2
    initial, rows = torch.get_num_threads(), []
    try:
        for count in counts:
            torch.set_num_threads(count)
            environment = _environment()
            if printing:
                print(f"{environment['cpu']}, {count} threads, load "
                      f"{environment['load_average']}, commit {environment['commit']}; "
                      f"median ms (min)")
            for batch_size in batch_sizes:
                for c_in, c_out, size in layers:
                    layer = bench_layer(c_in, c_out, size, batch_size, repeats)
                    rows += [{**environment, **row} for row in layer]
                    if printing:
                        cells = "  ".join(f"{r['form']} {r['median_ms']:7.2f} "
                                          f"({r['min_ms']:.2f})" for r in layer)
                        print(f"batch {batch_size:>3} {c_in:>4}->{c_out:<3} "
                              f"{size:>3}x{size:<3} {cells}", flush=True)
    finally:
        torch.set_num_threads(initial)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts, "
                        "'all' = every core (default: 1,2)")
    parser.add_argument("--batch-sizes", default="1,16", help="comma-separated (default: 1,16)")
    parser.add_argument("--repeats", type=positive_int, default=10,
                        help="samples per form, interleaved (default: 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    args = parser.parse_args(argv)
    try:
        _thread_counts(args.threads)
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error("--threads and --batch-sizes take comma-separated integers")
    rows = collect(False, threads=args.threads, batch_sizes=batch_sizes, repeats=args.repeats,
                   printing=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    sys.exit(main())
