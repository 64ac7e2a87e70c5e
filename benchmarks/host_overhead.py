"""Host cost per fused norm-act call and per small U-Net forward, against PyTorch's own ops.

At tiny shapes a kernel takes a few microseconds, so what a call costs is its Python and
dispatch work on the host: the argument checks, the backend lookup, the launcher's argument
packing. This script measures it on inputs small enough that the arithmetic is negligible,
under ``torch.no_grad()`` (inference), one thread by default, in one process:

- per call, eval BatchNorm + LeakyReLU on a (1, C, H, W) map: PyTorch's ``F.batch_norm`` +
  ``F.leaky_relu`` (two eager ops), ``F.leaky_relu`` alone (one op: what remains of the layer
  once the BatchNorm is folded into the convolution), and fastp2p's ``norm_act`` both ways
  (``norm="batch"`` with the running statistics; ``norm="none"``, the folded layer); the
  decoder's ``norm_act_concat`` (folded) against ``F.relu`` + ``torch.cat``;
  Also train-mode BatchNorm under ``no_grad`` (the reference's test.py keeps the generator in
  train mode): ``F.batch_norm(training=True)`` + ``F.leaky_relu`` against ``norm_act``;
- per forward: the reference ``UnetGenerator`` and ``fastp2p.UNet`` (same weights, ngf 8,
  32x32, batch 1, num_downs 5), in eval mode and in train mode (both under ``no_grad``).

Every case runs ``--calls`` times per sample; the cases take turns (A B C A B C ...) so that
they see the same machine load, and each figure is the median of ``--samples`` samples (µs per
call), in wall-clock time and in the process's CPU time (``time.process_time``: on a shared
machine, time spent waiting for a core shows in the first only). The CPU model and the load
average are printed with the figures. Run:
``python benchmarks/host_overhead.py [--threads 1] [--samples 31]``.
"""
import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F

import fastp2p
from fastp2p.cpu_info import cpu_model
from fastp2p.ops import backend_name_for, norm_act, norm_act_concat
from fastp2p.reference import UnetGenerator



def per_call_us(cases, calls, samples):
    """{name: (median wall µs, median CPU µs) per call}, the cases timed in turn per sample."""
    for fn in cases.values():  # warm-up: first-call caches, lazy imports
        for _ in range(3):
            fn()
    wall, cpu = {name: [] for name in cases}, {name: [] for name in cases}
    for _ in range(samples):
        for name, fn in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            cpu[name].append((time.process_time() - start_cpu) * 1e6 / calls)
            wall[name].append((time.perf_counter() - start) * 1e6 / calls)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]))
            for name in cases}


def op_cases(channels, size):
    """The per-call cases on a (1, channels, size, size) conv output."""
    x = torch.randn(1, channels, size, size)
    skip = torch.randn(1, channels, size, size)
    weight, bias = torch.rand(channels) + 0.5, torch.randn(channels)
    mean, var = torch.randn(channels), torch.rand(channels) + 0.5
    train_mean, train_var = mean.clone(), var.clone()  # updated by the train-mode cases
    return {
        "torch: F.batch_norm + F.leaky_relu": lambda: F.leaky_relu(
            F.batch_norm(x, mean, var, weight, bias, False), 0.2),
        "torch: F.leaky_relu (folded layer)": lambda: F.leaky_relu(x, 0.2),
        "torch: cat(relu(skip), relu(x)) (folded decoder)": lambda: torch.cat(
            [F.relu(skip), F.relu(x)], 1),
        "fastp2p: norm_act batch eval + leaky_relu": lambda: norm_act(
            x, weight, bias, mean, var, norm="batch", training=False,
            activation="leaky_relu", slope=0.2),
        "fastp2p: norm_act none + leaky_relu (folded)": lambda: norm_act(
            x, norm="none", activation="leaky_relu", slope=0.2),
        "fastp2p: norm_act_concat none + relu (folded)": lambda: norm_act_concat(
            skip, x, norm="none", activation="relu"),
        "torch: F.batch_norm train + F.leaky_relu": lambda: F.leaky_relu(
            F.batch_norm(x, train_mean, train_var, weight, bias, True), 0.2),
        "fastp2p: norm_act batch train + leaky_relu": lambda: norm_act(
            x, weight, bias, train_mean, train_var, norm="batch", training=True,
            activation="leaky_relu", slope=0.2),
    }


def unet_cases(ngf, size, num_downs):
    torch.manual_seed(0)
    reference = UnetGenerator(3, 3, num_downs, ngf=ngf).eval()
    fused = fastp2p.UNet(3, 3, num_downs, ngf=ngf).eval()
    fused.load_state_dict(reference.state_dict())
    train_reference, train_fused = copy.deepcopy(reference).train(), copy.deepcopy(fused).train()
    x = torch.randn(1, 3, size, size)
    difference = (fused(x) - reference(x)).abs().max().item()
    if difference > 1e-4:
        raise SystemExit(f"fastp2p.UNet differs from the reference by {difference:.2e}")
    return {"torch: reference UnetGenerator forward, eval": lambda: reference(x),
            "fastp2p: UNet forward, eval": lambda: fused(x),
            "torch: reference UnetGenerator forward, train": lambda: train_reference(x),
            "fastp2p: UNet forward, train": lambda: train_fused(x)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--samples", type=int, default=31, help="samples per case (median)")
    parser.add_argument("--calls", type=int, default=200, help="op calls per sample")
    parser.add_argument("--forwards", type=int, default=10, help="U-Net forwards per sample")
    parser.add_argument("--channels", type=int, default=64, help="C of the per-call map")
    parser.add_argument("--size", type=int, default=4, help="H = W of the per-call map")
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--image", type=int, default=32, help="U-Net input H = W")
    parser.add_argument("--num-downs", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    with torch.no_grad():
        ops = per_call_us(op_cases(args.channels, args.size), args.calls, args.samples)
        forwards = per_call_us(unet_cases(args.ngf, args.image, args.num_downs), args.forwards,
                               args.samples)
    load_after = os.getloadavg()

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s); "
          f"torch {torch.__version__}; fastp2p backend on CPU: "
          f"{backend_name_for(torch.device('cpu'))}")
    print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"\nper call, (1, {args.channels}, {args.size}, {args.size}) float32, no_grad, median "
          f"of {args.samples} x {args.calls} calls (wall, CPU):")
    for name, (us, cpu_us) in ops.items():
        print(f"  {us:8.1f} µs {cpu_us:8.1f} µs  {name}")
    print(f"\nper forward, ngf {args.ngf}, 1x3x{args.image}x{args.image}, num_downs "
          f"{args.num_downs}, no_grad, median of {args.samples} x {args.forwards} (wall, CPU):")
    for name, (us, cpu_us) in forwards.items():
        print(f"  {us:8.1f} µs {cpu_us:8.1f} µs  {name}")
    for mode in ("eval", "train"):
        ours = forwards[f"fastp2p: UNet forward, {mode}"]
        theirs = forwards[f"torch: reference UnetGenerator forward, {mode}"]
        print(f"  {mode}: fastp2p / reference time: {ours[0] / theirs[0]:.2f} (wall), "
              f"{ours[1] / theirs[1]:.2f} (CPU)")


if __name__ == "__main__":
    main()
