"""Time the Triton and the CUDA C++ norm-act kernels on every norm-act shape of U-Net-256 and the
PatchGAN, and write the per-shape choice table that ``fastp2p.ops.backends.cuda_choice`` reads.

Both backends run the same fused op (``fastp2p.ops.norm_act`` / ``norm_act_concat``, forward and
backward, bf16 channels-last, batch 1 and 64, instance and batch norm; the shapes of
``bench_norm_act``), each forced with FASTP2P_BACKEND and timed with the suite's harness. For
each (norm, dtype, N, C, H, W) the forward+backward medians of the ops on that input shape are
summed per backend; the CUDA C++ kernel gets the shape when its sum is lower. Needs a GPU and a
CUDA build of fastp2p._C. Commit the table as ``fastp2p/ops/backends/cuda_norm_act_choice.json``
with the run's results (``benchmarks/gpu_check.sh`` writes it).

    python benchmarks/cuda_choice_table.py --out fastp2p/ops/backends/cuda_norm_act_choice.json
"""
import argparse
import json
import os
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

try:
    from bench_norm_act import LAYERS, QUICK_LAYERS, _forward_backward, _fused, _inputs
    from kernel_timing import time_ms
except ImportError:  # imported as benchmarks.cuda_choice_table
    from benchmarks.bench_norm_act import LAYERS, QUICK_LAYERS, _forward_backward, _fused, _inputs
    from benchmarks.kernel_timing import time_ms

from fastp2p.bench.environment import describe, find_checkout
from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.ops.backends import ENV_VAR

COMPARED = ("triton", "cpp")


@contextmanager
def forced_backend(name: str):
    """FASTP2P_BACKEND=name inside the block (the dispatcher reads it on every call)."""
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = name
    try:
        yield
    finally:
        if previous is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = previous


def measure(device: torch.device, backends=COMPARED, quick: bool = False) -> list:
    """Rows (op, norm, dtype, shape, backend, median_ms) of the forward+backward of every shape
    through each backend. bf16 on CUDA; float32 elsewhere (a CPU run only exercises the code)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows = []
    for norm in ("instance", "batch"):
        for batch in ((1, 2) if quick else (1, 64)):
            for op, channels, side in (QUICK_LAYERS if quick else LAYERS):
                args, _ = _inputs(op, batch, channels, side, dtype, device)
                for backend in backends:
                    with forced_backend(backend):
                        median, _, _ = time_ms(_forward_backward(_fused(op, norm), args), device,
                                               quick)
                    rows.append(dict(op=op, norm=norm, dtype=str(dtype).replace("torch.", ""),
                                     shape=list(args[1].shape), backend=backend,
                                     median_ms=median))
    return rows


def choice_table(rows, environment=None) -> dict:
    """The table: ``cpp`` lists the (norm, dtype, shape) entries the C++ kernel won; ``compared``
    has every shape's summed milliseconds per backend."""
    sums = defaultdict(lambda: dict.fromkeys(COMPARED, 0.0))
    seen = defaultdict(set)
    for row in rows:
        if row["backend"] not in COMPARED:
            continue
        key = (row["norm"], row["dtype"], tuple(row["shape"]))
        sums[key][row["backend"]] += row["median_ms"]
        seen[key].add((row["op"], row["backend"]))
    compared = []
    for key, total in sorted(sums.items()):
        ops = sorted({op for op, _ in seen[key]})
        if any((op, backend) not in seen[key] for op in ops for backend in COMPARED):
            continue  # a backend missing for some op: no fair comparison on this shape
        winner = "cpp" if total["cpp"] < total["triton"] else "triton"
        compared.append(dict(norm=key[0], dtype=key[1], shape=list(key[2]), ops=ops,
                             triton_ms=total["triton"], cpp_ms=total["cpp"], backend=winner))
    if not compared:
        raise ValueError("no norm-act shape was timed through both the triton and the cpp "
                         "backend")
    environment = environment or {}
    return {"device": environment.get("device"), "commit": environment.get("commit"),
            "torch": environment.get("torch"), "triton": environment.get("triton"),
            "rule": "cpp where the summed forward+backward median over the ops is lower",
            "cpp": [dict(norm=c["norm"], dtype=c["dtype"], shape=c["shape"])
                    for c in compared if c["backend"] == "cpp"],
            "compared": compared}


def _print_comparison(table) -> None:
    print(f"{'norm':9s} {'shape (N, C, H, W)':22s} {'triton ms':>10s} {'cuda c++ ms':>12s}  "
          "faster")
    for c in table["compared"]:
        print(f"{c['norm']:9s} {str(tuple(c['shape'])):22s} {c['triton_ms']:10.4f} "
              f"{c['cpp_ms']:12.4f}  {c['backend']} ({c['triton_ms'] / c['cpp_ms']:.2f}x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where to write the table (JSON)")
    parser.add_argument("--quick", action="store_true", help="three small shapes (a smoke run)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_choice_table: needs a CUDA GPU (the choice is between two GPU kernels)",
              file=sys.stderr)
        return 1
    if not cpp_backend.cuda_available():
        print(f"cuda_choice_table: {cpp_backend.cuda_unavailable_reason()}", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    environment = describe(device, find_checkout(Path(__file__).resolve().parent))
    table = choice_table(measure(device, quick=args.quick), environment)
    _print_comparison(table)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"cuda_choice_table: {len(table['cpp'])} of {len(table['compared'])} shapes to the "
          f"CUDA C++ kernels -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
