"""Which launches of a batch-1 training step follow a Triton kernel directly (what programmatic
dependent launch, FASTP2P_PDL=1, can overlap), traced on a CPU.

Runs fastp2p's U-Net-256 and 70x70 PatchGAN (batch norm, dropout) forward and backward once at
batch 1 with the Triton backend, its norm-act kernels replaced by stubs that record their names
and the launchers deciding as for a 132-SM H200 (``count_norm_act_bwd_ops.gpu_decisions``),
and records every ATen op that launches work in between. A step runs G's forward and backward
once, D's forward three times and its backward three times (the backward through D of the G
step included). The CPU's own ops differ from CUDA's in places (its convolutions),
but no ATen op sits between two norm-act launches in either, so the Triton -> Triton pairs are
the GPU step's.

    python benchmarks/count_triton_pairs.py
"""
import collections
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["FASTP2P_BACKEND"] = "triton"

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from count_norm_act_bwd_ops import gpu_decisions  # noqa: E402
from op_counter import NO_LAUNCH  # noqa: E402
from fastp2p.bench.networks import NetworkConfig, build_pair  # noqa: E402



class _Order(TorchDispatchMode):
    """Appends every launching ATen op to ``order`` (the kernel stubs append their names, which
    end in ``_kernel``, to the same list)."""

    def __init__(self, order):
        super().__init__()
        self.order = order

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH | {"zeros", "zeros_like", "ones_like", "fill_"}:
            self.order.append(name)
        return func(*args, **(kwargs or {}))


def _triton_pairs(order):
    """Counter of (kernel, kernel) for consecutive Triton launches."""
    return collections.Counter((a, b) for a, b in zip(order, order[1:])
                               if a.endswith("_kernel") and b.endswith("_kernel"))


def main() -> int:
    generator, discriminator = build_pair(NetworkConfig(), fast=True, device="cpu", seed=0)
    real_a = torch.randn(1, 3, 256, 256)
    order, marks = [], {}
    with gpu_decisions(order=order), _Order(order):
        fake_b = generator(real_a)
        marks["G forward"] = len(order)
        logits = discriminator(torch.cat([real_a, fake_b], 1))
        marks["D forward"] = len(order)
        logits.float().mean().backward()
    backward = order[marks["D forward"]:]
    split = len(backward) - next(i for i, name in enumerate(reversed(backward))
                                 if name == "tanh_backward") - 1  # G's output layer
    phases = {"G forward": order[:marks["G forward"]],
              "D forward": order[marks["G forward"]:marks["D forward"]],
              "D backward": backward[:split], "G backward": backward[split:]}
    per_step = {"G forward": 1, "D forward": 3, "D backward": 3, "G backward": 1}
    total = 0
    for phase, ops in phases.items():
        pairs = _triton_pairs(ops)
        launches = sum(name.endswith("_kernel") for name in ops)
        total += per_step[phase] * sum(pairs.values())
        print(f"{phase} (x{per_step[phase]} per step): {launches} Triton launches, "
              f"{sum(pairs.values())} directly after another: {dict(pairs)}")
        before = collections.Counter(a for a, b in zip(ops, ops[1:])
                                     if b.endswith("_kernel") and not a.endswith("_kernel"))
        print(f"    other launches before a Triton one: {dict(before)}")
    print(f"Triton -> Triton pairs per batch-1 step: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
