"""Per-layer benchmark of the fused Triton convolution (issue 16) against cuDNN + today's
norm-act kernels, on every conv of U-Net-256 and the 70x70 PatchGAN (256x256 input), batch 1
and 64, batch and instance norm, bf16 channels-last, forward and forward+backward: ms (medians
of CUDA-graph replays, p20/p80) and TFLOP/s, with the ratio of the two in the same run. With
``--out``, also the conv choice table (``benchmarks/conv_choice_table.py``: its rule per
direction, the GPU's name, and every row for the record), rewritten atomically after each layer
and batch size, so a run stopped by a time limit leaves the table of what it measured.

Per layer, every provider does the work the training step does for it: the previous layer's norm
+ activation applied to its pre-norm output, this layer's convolution, its bias.
The networks route every call without a gradient by the table's ``forward`` list, in train mode
(norms on the batch's statistics) and in eval mode, where a batch norm uses its running
statistics: today's path then folds it into the convolution before it (fastp2p.nn.folding), so
only the activation is left of the norm-act, and the fused path runs its convolution without
statistics, the running ones giving the next prologue. So each ``forward`` row is timed as the
network's mode (``network_mode``) has it: "train" rows for every layer, and, for a layer of a
batch-norm network with a batch norm before or after it, "eval" rows too (the rule then wants a
win in both). An instance-norm network's eval forward is its train forward (its norms keep no
running statistics; ones that do send the network to the reference forward), and training wants
a gradient: those rows are "train" only. Not timed, in either mode: the fused path's tiny
per-channel ops that turn a layer's statistics (in eval, a norm's running ones) into the next
prologue's scale/shift.
- ``cudnn+norm_act`` (today's path): ``fastp2p.ops.norm_act`` then the module convolution as
  the networks run it (``fastp2p.ops.aligned_channels.conv2d`` /
  ``fastp2p.ops.conv_transpose.conv_transpose2d``: the image-side layers' channels padded to
  8); a decoder conv reads ``norm_act_concat``'s concatenation of the skip (already activated:
  the norm-act before its level's down conv wrote it) and the up tensor. The statistics of this
  layer's output are the next layer's norm-act's job (as its own input's are here), so summed
  over a network both providers compute each norm's statistics once.
  In eval: the activation alone before the conv (``norm="none"``: the norm before it is
  folded into the previous conv), and the conv folded with the norm after it
  (``fastp2p.nn.folding.folded_conv``, built before the timing, as the network's cache holds
  it).
- ``fused``: ``fastp2p.ops.conv_norm_act`` — prologue scale/shift + activation, bias and the
  statistics of the norm after it in the epilogue; a decoder reads skip and up as two K-ranges.
  In eval: no statistics (``norm="none"``).
- ``cudnn_graph``: ``fastp2p.ops.backends.cudnn_graphs`` — the same layer as cuDNN runtime-
  fusion graphs (package nvidia-cudnn-frontend): batch norm, one source, not transposed; other
  layers are rows with ``cudnn_graph_error`` "unsupported: <why>", and without the package
  "not installed: ...". ``cudnn_graph_variants`` records what cuDNN built (or refused) per
  graph; in eval, no statistics. Measured only: the networks never route to it.
Each row names its ``fastest`` provider (lowest median).
The U-Net's output conv ends in the network's Tanh: ``torch.tanh`` after cuDNN's, the epilogue's
tanh in the fused one (as ``fastp2p.nn.unet_conv`` runs each).

CUDA only: ``python benchmarks/conv_layer_timing.py [--quick] [--norm batch|instance|both]
[--out conv_choice.json]``; on a machine without a GPU it says so and exits with status 1.
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

from fastp2p.ops.backends import cudnn_graphs

try:
    from conv_choice_table import (MODES, PATCHGAN, PROVIDERS, UNET, choice_table,
                                   fastest_provider, layer_entry, write_table)
    from kernel_timing import time_ms
except ImportError:  # imported as benchmarks.conv_layer_timing
    from benchmarks.conv_choice_table import (MODES, PATCHGAN, PROVIDERS, UNET, choice_table,
                                              fastest_provider, layer_entry, write_table)
    from benchmarks.kernel_timing import time_ms

QUICK = [UNET[2], UNET[9], UNET[12], PATCHGAN[3]]
NORMS = ("batch", "instance")
DTYPE = torch.bfloat16
SLOPE = 0.2


def _flops(layer, batch):
    _, transposed, stride, sources, c_out, side, *_ = layer
    out_side = side * stride if transposed else (side + 2 - 4) // stride + 1
    pixels = side * side if transposed else out_side * out_side
    return 2 * batch * pixels * sum(sources) * c_out * 16


def _layer_inputs(layer, batch, norm, device, dtype=DTYPE):
    """Pre-norm sources, per-source scale/shift (None, None where no norm precedes), weight,
    bias."""
    _, transposed, _, sources, c_out, side, _, normed, _ = layer
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(shape, generator=gen, device=device)

    def coefficients(c):
        return randn(batch, c) if norm == "instance" else randn(c)

    xs = [randn(batch, c, side, side).to(dtype).contiguous(memory_format=torch.channels_last)
          for c in sources]
    coeffs = [(coefficients(c).abs() + 0.5, coefficients(c)) if n else (None, None)
              for c, n in zip(sources, normed)]
    c_in = sum(sources)
    weight = (randn(c_in, c_out, 4, 4) if transposed else randn(c_out, c_in, 4, 4)) * 0.02
    return xs, coeffs, weight.to(dtype), randn(c_out).to(dtype)


def _ends_in_tanh(layer) -> bool:
    """The U-Net's output conv: its one transposed conv with no norm after it (then Tanh)."""
    _, transposed, _, _, _, _, _, _, followed = layer
    return transposed and not followed


def _fused(layer, norm, coeffs, weight, bias, running=False):
    """``running``: the network in eval mode, its batch norms on their running statistics
    (the norm after the conv then takes no statistics: fastp2p.nn.fused_conv)."""
    from fastp2p.kernels.conv_fused_types import InputTransform
    from fastp2p.ops.conv_norm_act import conv_norm_act
    _, transposed, stride, _, _, _, activation, _, followed = layer
    transforms = [InputTransform(scale, shift, activation) for scale, shift in coeffs]
    output_activation = "tanh" if _ends_in_tanh(layer) else "none"

    def call(*leaves):
        y, mean, rstd = conv_norm_act(leaves, transforms, weight, bias, stride=stride,
                                      padding=1, transposed=transposed, slope=SLOPE,
                                      norm=norm if followed and not running else "none",
                                      output_activation=output_activation)
        return [t for t in (y, mean, rstd) if t is not None]
    return call


def _meta_conv(layer):
    """The layer's nn.Conv2d / nn.ConvTranspose2d on the meta device: settings only, the
    caller sets its weight and bias."""
    _, transposed, stride, sources, c_out, *_ = layer
    return (nn.ConvTranspose2d if transposed else nn.Conv2d)(
        sum(sources), c_out, 4, stride, 1, device="meta")


def _run_conv(layer, module):
    """module(x) as the networks' module path runs it."""
    from fastp2p.ops.aligned_channels import conv2d
    from fastp2p.ops.conv_transpose import conv_transpose2d
    run = conv_transpose2d if layer[1] else conv2d
    return lambda x: run(module, x)


def _module_conv(layer, weight, bias):
    """The layer's module convolution computing with ``weight`` and ``bias`` (the timed
    autograd leaves), run as the networks' module path runs it."""
    module = _meta_conv(layer)
    del module.weight, module.bias
    module.weight, module.bias = weight, bias
    return _run_conv(layer, module)


def _folded_conv(layer, weight, bias):
    """The layer's convolution with an eval batch norm after it folded in, as the networks'
    eval forward runs it: fastp2p.nn.folding.folded_conv's stand-in (the folded weight keeps
    the conv's dtype and layout), built here, before the timing, as the network's cache holds
    it between calls."""
    from fastp2p.nn.folding import folded_conv
    module = _meta_conv(layer)
    module.weight, module.bias = (nn.Parameter(t, requires_grad=False) for t in (weight, bias))
    norm = nn.BatchNorm2d(layer[4], device=weight.device).eval()
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    return _run_conv(layer, folded_conv(module, norm))


def _cudnn(layer, norm, coeffs, weight, bias, running=False):
    """``running``: the network in eval mode, its batch norms on their running statistics,
    each folded into the conv before it (``_folded_conv``): the activation alone is left of a
    norm-act."""
    from fastp2p.ops import norm_act, norm_act_concat
    _, _, _, _, _, _, activation, normed, followed = layer
    module_conv = (_folded_conv if running and followed else _module_conv)(layer, weight, bias)
    conv = (lambda x: torch.tanh(module_conv(x))) if _ends_in_tanh(layer) else module_conv
    before = "none" if running else norm  # what is left of the norm before the conv

    def call(*leaves):
        if len(leaves) == 2:  # writes cat([relu(skip), relu(norm(up))]) into one buffer
            skip, up = leaves
            return [conv(norm_act_concat(skip, up, norm=before, activation="relu"))]
        x = leaves[0]
        if normed[0]:
            x = norm_act(x, norm=before, activation=activation, slope=SLOPE)
        elif activation != "none":
            x = norm_act(x, norm="none", activation=activation, slope=SLOPE)
        return [conv(x)]
    return call


def _cudnn_graph(layer, norm, coeffs, weight, bias, running=False):
    """The layer through cuDNN graphs; refuses (CudnnGraphError) before any timing a layer
    they do not cover or a machine without the package. ``running``: in eval, no
    statistics."""
    _, transposed, stride, sources, _, _, activation, normed, followed = layer
    cudnn_graphs.check_layer(norm=norm if normed[0] or followed else "none",
                             sources=len(sources), transposed=transposed, activation=activation)
    cudnn_graphs.check_available(weight.device)
    (scale, shift), = coeffs

    def call(x):
        y, mean, rstd = cudnn_graphs.conv_graph_norm(
            x, scale, shift, weight, bias, stride=stride, padding=1, activation=activation,
            slope=SLOPE, norm="batch" if followed and not running else "none")
        return [t for t in (y, mean, rstd) if t is not None]
    return call


def _failure(error: Exception) -> str:
    """A provider's row entry when it did not run: "not installed: ...", "unsupported: ...",
    "unavailable: ..." (no CUDA device) or the error."""
    for kind, status in ((cudnn_graphs.CudnnGraphNotInstalled, "not installed"),
                         (cudnn_graphs.CudnnGraphUnsupported, "unsupported"),
                         (cudnn_graphs.CudnnGraphUnavailable, "unavailable")):
        if isinstance(error, kind):
            return f"{status}: {error}"
    return f"{type(error).__name__}: {error}"


_MAKERS = {"cudnn": _cudnn, "fused": _fused, "cudnn_graph": _cudnn_graph}


def _forward_backward(make, xs, weight, bias):
    """Forward and backward of make(weight, bias) to the sources, weight and bias; the
    statistics get a gradient too (in a network the next norm's affine gives them one)."""
    leaves = [x.detach().requires_grad_() for x in xs]
    params = [weight.detach().requires_grad_(), bias.detach().requires_grad_()]
    fn = make(*params)
    outputs = fn(*leaves)
    grads = [torch.randn_like(outputs[0])] + [torch.ones_like(t) for t in outputs[1:]]

    def call():
        for leaf in leaves + params:
            leaf.grad = None
        torch.autograd.backward(fn(*leaves), grads)
    return call


def _timed(make, mode, running, layer, norm, xs, coeffs, weight, bias, device, quick):
    """(median, p20, p80) ms of one provider in one mode (``running``: eval, forward only)."""
    if mode == "forward":
        fn = make(layer, norm, coeffs, weight, bias, running)
        with torch.no_grad():
            return time_ms(lambda: fn(*xs), device, quick)
    return time_ms(_forward_backward(lambda w, b: make(layer, norm, coeffs, w, b), xs, weight,
                                     bias), device, quick)


def network_modes(layer, norm: str, mode: str) -> tuple:
    """The ``network_mode``s a layer's rows of ``mode`` are timed in: "eval" too for a forward
    of a batch-norm network with a batch norm before or after the layer (see the module's
    docstring); else "train" only."""
    _, _, _, _, _, _, _, normed, followed = layer
    if mode == "forward" and norm == "batch" and (any(normed) or followed):
        return ("train", "eval")
    return ("train",)


def measure(layer, batch, norm, device, quick=False, print_row=None, dtype=DTYPE) -> list:
    """The rows of one layer at one batch size in a network with ``norm`` (both modes, each in
    its ``network_modes``), in conv_choice_table.choice_table's format; ``print_row(row,
    flops)`` after each."""
    xs, coeffs, weight, bias = _layer_inputs(layer, batch, norm, device, dtype)
    entry = layer_entry(layer, batch, norm, str(dtype).replace("torch.", ""))
    rows = []
    for mode, network_mode in ((m, n) for m in MODES for n in network_modes(layer, norm, m)):
        row = dict(layer=layer[0], network_norm=norm, network_mode=network_mode, batch=batch,
                   mode=mode, entry=entry, **{provider: None for provider in PROVIDERS})
        for provider in PROVIDERS:
            try:
                median, p20, p80 = _timed(_MAKERS[provider], mode, network_mode == "eval",
                                          layer, norm, xs, coeffs, weight, bias, device, quick)
                row[provider] = dict(median_ms=median, p20_ms=p20, p80_ms=p80)
            except Exception as error:  # a failure is a row, not a crash
                row[f"{provider}_error"] = _failure(error)
        variants = cudnn_graphs.describe(xs[0].shape, weight.shape)
        if variants:
            row["cudnn_graph_variants"] = variants
        row["fastest"] = fastest_provider(row)
        if print_row is not None:
            print_row(row, _flops(layer, batch) * (1 if mode == "forward" else 3))
        rows.append(row)
    return rows


def _print_row(row, flops) -> None:
    mode = row["mode"] + (" eval" if row["network_mode"] == "eval" else "")
    start = f"{row['layer']:16s} {row['network_norm']:8s} {row['batch']:5d} {mode:17s}"
    for provider in ("cudnn", "fused"):
        if row[provider] is None:
            print(f"{start} {provider} failed: {row[f'{provider}_error']}")
    graph = row.get("cudnn_graph")
    graph_column = (f"{graph['median_ms']:9.4f} [{graph['p20_ms']:.3f},{graph['p80_ms']:.3f}]"
                    if graph else f"{row.get('cudnn_graph_error', '-').split(':')[0]:>24s}")
    if row["cudnn"] is None or row["fused"] is None:
        print(f"{start} cudnn_graph {graph_column} fastest {row.get('fastest')}")
        return
    c, f = row["cudnn"], row["fused"]
    print(f"{start} {c['median_ms']:9.4f} [{c['p20_ms']:.3f},{c['p80_ms']:.3f}] "
          f"{f['median_ms']:9.4f} [{f['p20_ms']:.3f},{f['p80_ms']:.3f}] "
          f"{c['median_ms'] / f['median_ms']:7.2f}x "
          f"{flops / c['median_ms'] / 1e9:6.1f}/{flops / f['median_ms'] / 1e9:<6.1f} "
          f"{graph_column} {row.get('fastest')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="four layers (U-Net down2, up6, up3, PatchGAN conv3), shorter "
                             "timing loops")
    parser.add_argument("--norm", choices=NORMS + ("both",), default="both",
                        help="the networks' norm layers (default both: a table for either)")
    parser.add_argument("--out", type=Path,
                        help="write the conv choice table (JSON) here; commit it as "
                             "fastp2p/ops/backends/conv_choice.json")
    args = parser.parse_args(argv)
    if args.out and args.norm != "both":
        parser.error("--out needs --norm both: the table serves networks of either norm, and "
                     "some layers' keys do not name the norm before them")
    if not torch.cuda.is_available():
        print("conv_layer_timing: needs a CUDA GPU (the fused Triton convolution runs on CPUs only "
              "through the Triton interpreter, which is not a benchmark); nothing measured",
              file=sys.stderr)
        return 1
    from fastp2p.bench.environment import describe, find_checkout
    from fastp2p.ops.backends.conv_choice import device_name
    device = torch.device("cuda")
    environment = describe(device, find_checkout(Path(__file__).resolve().parent))
    measured_on = device_name(device)
    norms = NORMS if args.norm == "both" else (args.norm,)
    print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, bf16 "
          f"channels-last; ms = median of CUDA-graph replays [p20, p80]")
    print(f"{'layer':16s} {'norm':8s} {'batch':>5s} {'mode':17s} "
          f"{'cudnn+norm_act ms [p20,p80]':>29s} {'fused ms [p20,p80]':>28s} {'speedup':>8s} "
          f"{'TFLOP/s cudnn/fused':>20s} {'cudnn_graph ms [p20,p80]':>24s} fastest")
    why = cudnn_graphs.availability(device)
    print(f"# cudnn_graph: {'available' if why is None else why} (measured, never routed)")
    rows = []
    for layer in (QUICK if args.quick else UNET + PATCHGAN):
        # a layer with no norm before or after it does the same work in either network
        measured = norms if any(layer[7]) or layer[8] else norms[:1]
        for batch in (1, 64):
            for norm in measured:
                rows += measure(layer, batch, norm, device, args.quick, _print_row)
            if args.out:
                write_table(choice_table(rows, measured_on, environment), args.out)
    if args.out:
        table = choice_table(rows, measured_on, environment)
        counts = ", ".join(f"{len(entries)} {mode}" for mode, entries in table["fused"].items())
        print(f"conv_layer_timing: layer keys to the fused convolution on {measured_on}: "
              f"{counts} ({table['rule']}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
