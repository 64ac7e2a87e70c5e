"""Where a fastp2p training step spends its GPU time: the PyTorch profiler over a few steps of
``Pix2PixEngine`` (bf16, channels-last) on U-Net-256 + the 70x70 PatchGAN, run eagerly so that
every kernel shows by name (the CUDA-graph step replays the same kernels without the launch
gaps). Prints, per batch size, the GPU time per step by kernel family and the heaviest kernels,
beside the FLOP floor (the step's model FLOPs at the bf16 matmul rate measured here) and the
measured copy bandwidth: the numbers benchmarks/NOTES.md records. Also each CUDA stream's
kernel time and the step's busy time (the union of its kernels' intervals): with
``--side-streams``, ``--optimizer-overlap`` or ``--split-conv-backward`` the difference is the
kernel time that ran in overlap.

    python benchmarks/profile_step.py --batch-sizes 1,64 --out profile.txt
"""
import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from fastp2p.bench import ceilings
from fastp2p.bench.flops import training_step_flops
from fastp2p.bench.launches import count_device_work
from fastp2p.bench.networks import FULL_CONFIG, build_pair, make_batch
from fastp2p.train.engine import Pix2PixEngine

# Kernel families by name, first match wins (cuDNN / cuBLAS / CUTLASS convolutions and GEMMs,
# fastp2p's Triton kernels, PyTorch's elementwise and reduction kernels, the fused Adam).
FAMILIES = (
    ("adam", r"adam|Adam|multi_tensor"),  # before norm-act: its name has "_apply" too
    ("fastp2p norm-act", r"norm_act|_stats|_apply|_reduce_partials"),
    ("fastp2p loss", r"loss"),
    ("convolution / GEMM", r"conv|gemm|Gemm|cudnn|cutlass|sm90|wgrad|dgrad|fprop|xmma|implicit"),
    ("layout / cast copies", r"copy|Copy|nchwToNhwc|nhwcToNchw|convert|transpose"),
    ("elementwise / reduce", r"elementwise|vectorized|reduce|Reduce"),
)


def family(name: str) -> str:
    for label, pattern in FAMILIES:
        if re.search(pattern, name):
            return label
    return "other"


def stream_times(events, steps: int) -> tuple[dict, float]:
    """({stream id: summed kernel ms per step}, busy ms per step): busy time is the union of
    the kernels' intervals, so summed time minus busy time is what ran in overlap."""
    per_stream, intervals = defaultdict(float), []
    for event in events:
        if event.device_type == torch.autograd.DeviceType.CUDA:
            per_stream[event.device_resource_id] += event.device_time / 1e3 / steps
            intervals.append((event.time_range.start, event.time_range.end))
    busy_us, reached = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reached:
            busy_us += end - max(start, reached)
            reached = end
    return dict(per_stream), busy_us / 1e3 / steps


def profile_batch(batch: int, steps: int, warmup: int,
                  master_weights: bool = False,
                  fused_step_losses: bool = False,
                  side_streams: bool = False,
                  optimizer_overlap: bool = False,
                  split_conv_backward: bool = False) -> tuple[float, dict, list, dict]:
    """(GPU ms per step, {family: ms per step}, [(kernel, ms per step, calls per step)],
    {"kernels": per step, "memory_ops": per step, "streams": {stream: ms per step},
    "busy_ms": per step})."""
    generator, discriminator = build_pair(FULL_CONFIG, fast=True, device="cuda", seed=0)
    engine = Pix2PixEngine(generator, discriminator, precision="bf16", channels_last=True,
                           cuda_graph=False, master_weights=master_weights,
                           fused_step_losses=fused_step_losses, side_streams=side_streams,
                           optimizer_overlap=optimizer_overlap,
                           split_conv_backward=split_conv_backward)
    real_a, real_b = make_batch(FULL_CONFIG, batch, "cuda")
    for _ in range(warmup):
        engine.step(real_a, real_b)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            engine.step(real_a, real_b)
        torch.cuda.synchronize()
    kernels = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = kernels[event.name]
            entry[0] += event.device_time / 1e3 / steps  # µs in total -> ms per step
            entry[1] += 1
    families = defaultdict(float)
    for name, (ms, _) in kernels.items():
        families[family(name)] += ms
    top = sorted(((name, ms, calls / steps) for name, (ms, calls) in kernels.items()),
                 key=lambda item: -item[1])
    counts = {name: count / steps for name, count in count_device_work(prof.events()).items()}
    counts["streams"], counts["busy_ms"] = stream_times(prof.events(), steps)
    return sum(families.values()), dict(families), top, counts


def batch_report(batch: int, total: float, families: dict, top: list, counts: dict, *,
                 flop_floor: float, top_count: int) -> list:
    """The report's lines for one batch size (``profile_batch``'s figures; ``flop_floor`` in
    ms per step)."""
    lines = [f"\n== batch {batch}: {total:.2f} GPU ms per step (eager, summed kernel "
             f"time); FLOP floor {flop_floor:.2f} ms ({flop_floor / total:.0%} of it); "
             f"{counts['kernels']:.0f} kernels and {counts['memory_ops']:.0f} "
             "copies / fills per step"]
    streams = ", ".join(f"stream {sid} {ms:.3f} ms" for sid, ms in
                        sorted(counts["streams"].items()))
    lines.append(f"  kernels by stream: {streams}; busy {counts['busy_ms']:.3f} ms per step "
                 f"({total - counts['busy_ms']:.3f} ms of kernel time in overlap)")
    for label, ms in sorted(families.items(), key=lambda item: -item[1]):
        lines.append(f"  {label:24s} {ms:9.3f} ms  {ms / total:6.1%}")
    lines.append("  heaviest kernels (ms per step, calls per step):")
    for name, ms, calls in top[:top_count]:
        lines.append(f"  {ms:9.3f} {calls:6.1f}  {name[:110]}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated (default 1,64)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--warmup", type=int, default=5, help="steps first (default 5)")
    parser.add_argument("--top", type=int, default=25, help="kernels listed per batch size")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--master-weights", action="store_true",
                        help="profile the engine with master_weights=True (issue 17)")
    parser.add_argument("--fused-step-losses", action="store_true",
                        help="profile the engine with fused_step_losses=True (issue 17)")
    parser.add_argument("--side-streams", action="store_true",
                        help="profile the engine with side_streams=True (issue 17): the report "
                        "adds each stream's kernel time and the step's busy time")
    parser.add_argument("--optimizer-overlap", action="store_true",
                        help="profile the engine with optimizer_overlap=True (issue 17; implies "
                        "--master-weights): each network's Adam bucket by bucket on a second "
                        "stream during its backward")
    parser.add_argument("--split-conv-backward", action="store_true",
                        help="profile the engine with split_conv_backward=True (issue 17): each "
                        "convolution's weight gradient on a second stream beside its data "
                        "gradient")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_step: needs a CUDA GPU", file=sys.stderr)
        return 1
    matmul = ceilings.matmul_rate("cuda")
    copy = ceilings.copy_bandwidth("cuda")
    gflop = training_step_flops(FULL_CONFIG)["train_step_gflop_per_image"]
    lines = [f"device {torch.cuda.get_device_name()}, torch {torch.__version__}; measured "
             f"{matmul['dtype']} matmul {matmul['tflops']:.0f} TFLOP/s, copy "
             f"{copy['gbps']:.0f} GB/s; model {gflop:.1f} GFLOP per image per step"]
    print(lines[0])
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        measured = profile_batch(batch, args.steps, args.warmup,
                                 args.master_weights or args.optimizer_overlap,
                                 args.fused_step_losses, args.side_streams,
                                 args.optimizer_overlap, args.split_conv_backward)
        section = batch_report(batch, *measured, flop_floor=gflop * batch / matmul["tflops"],
                               top_count=args.top)
        del measured
        torch.cuda.empty_cache()
        print("\n".join(section))
        lines += section
        # after each batch size: a run stopped at its time limit keeps the sizes it measured
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
