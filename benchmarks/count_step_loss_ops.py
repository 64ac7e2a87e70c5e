"""Which PyTorch ops ``fused_step_losses=True`` takes out of a training step, counted on a CPU.

A GPU profile counts kernels (fastp2p.bench.launches); without a GPU this counts the ATen ops
one eager engine step dispatches (views and allocations left out: they launch nothing), once as
the CUDA engine runs its losses (fastp2p's GANLoss and fused L1, the autograd backward of the
loss arithmetic, the stack / add / isfinite bookkeeping) and once with the option on. With the
option on, the step-loss launchers are replaced by stubs that only allocate their outputs, so
the difference is exactly what the option removes; on Triton the two ops add 4 launches.
The loss custom ops count once each here, but launch 3 kernels each on CUDA (the loss kernel,
the sum of its partials, the division by numel): the printed estimate adds those.

    python benchmarks/count_step_loss_ops.py
"""
import collections
import os
import sys
from pathlib import Path

import torch

os.environ["FASTP2P_BACKEND"] = "reference"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fastp2p.ops.backends.reference as reference_backend  # noqa: E402
from fastp2p.nn.losses import l1_loss  # noqa: E402
from fastp2p.train.engine import Pix2PixEngine  # noqa: E402
from helpers.train_helpers import random_batches, tiny_networks  # noqa: E402
from op_counter import OpCounter  # noqa: E402

LOSS_CUSTOM_OPS = {"gan_loss_fwd": 3, "l1_loss_fwd": 3}  # CUDA kernels behind each
FUSED_LAUNCHES = 4  # two per network step on Triton


def _stub_d(logits_fake, logits_real, *, mode, tally=None):
    return torch.empty(3), torch.empty_like(logits_fake), torch.empty_like(logits_real)


def _stub_g(logits, fake_b, real_b, *, mode, lambda_l1, tally=None):
    return torch.empty(3), torch.empty_like(logits), torch.empty_like(fake_b)


def ops_per_step(fused_step_losses: bool) -> collections.Counter:
    engine = Pix2PixEngine(*tiny_networks(), fused_step_losses=fused_step_losses)
    engine._l1_loss = l1_loss  # the CUDA engine's fused L1 (the CPU engine runs F.l1_loss)
    batches = random_batches(2)
    engine.step(*batches[0])
    with OpCounter() as counter:
        engine.step(*batches[1])
    return counter.ops


def main() -> int:
    unfused = ops_per_step(False)
    reference_backend.d_step_losses_fwd = _stub_d
    reference_backend.g_step_losses_fwd = _stub_g
    fused = ops_per_step(True)
    removed, added = unfused - fused, fused - unfused
    kernels = sum(count * LOSS_CUSTOM_OPS.get(name, 1) for name, count in removed.items())
    print(f"ops per step: {sum(unfused.values())} without the option, {sum(fused.values())} "
          f"with it (step-loss launchers stubbed)")
    print(f"removed ({sum(removed.values())} ops): {dict(sorted(removed.items()))}")
    print(f"added: {dict(added) or 'none'}")
    print(f"estimated CUDA kernels per fp32 step: {kernels} removed, {FUSED_LAUNCHES} added "
          f"(bf16 also drops fake_B.float() and its backward cast: 2 more)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
