"""Micro-benchmark of the fused losses (loss + gradient in one pass) on the pix2pix shapes:
the PatchGAN's 30x30 logit map and the L1 term over the 3x256x256 output, batch 1 and 64,
against PyTorch eager (loss forward + autograd.grad) and torch.compile of the same.

``collect(quick)`` returns rows like bench_norm_act's; ``quick=True`` uses tiny shapes (on the
CPU when there is no GPU; the fastp2p provider names the backend that ran).
"""
import functools

import torch
import torch.nn.functional as F

from fastp2p.ops import backend_for, backend_name_for

try:
    from kernel_timing import copy_bandwidth_gbps, default_device, row, time_ms
except ImportError:  # imported as benchmarks.bench_losses
    from benchmarks.kernel_timing import copy_bandwidth_gbps, default_device, row, time_ms

SHAPES = {"gan_loss[vanilla]": (1, 30, 30), "gan_loss[lsgan]": (1, 30, 30),
          "l1_loss": (3, 256, 256)}
QUICK_SHAPES = {"gan_loss[vanilla]": (1, 30, 30), "l1_loss": (3, 32, 32)}


def _eager(op):
    """Loss and its gradient, the way autograd gets them."""
    def call(x, y):
        x = x.detach().requires_grad_()
        if op == "gan_loss[vanilla]":
            loss = F.binary_cross_entropy_with_logits(x, torch.ones_like(x))
        elif op == "gan_loss[lsgan]":
            loss = F.mse_loss(x, torch.ones_like(x))
        else:
            loss = F.l1_loss(x, y)
        return loss, torch.autograd.grad(loss, x)[0]
    return call


def _fused(op, device):
    backend = backend_for(device)
    if op == "l1_loss":
        return backend.l1_loss_fwd
    mode = op[op.index("[") + 1:-1]
    return lambda x, y: backend.gan_loss_fwd(x, mode=mode, target_is_real=True)


def collect(quick: bool = False) -> list:
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    copy_gbps = copy_bandwidth_gbps(device)
    rows = []
    for op, chw in (QUICK_SHAPES if quick else SHAPES).items():
        for batch in ((1, 2) if quick else (1, 64)):
            shape = (batch, *chw)
            x = torch.randn(shape, device=device).to(dtype).contiguous(
                memory_format=torch.channels_last)
            y = torch.randn_like(x)
            # read x (and y for L1), write the gradient
            moved = (3 if op == "l1_loss" else 2) * x.numel() * x.element_size()
            providers = {"eager": _eager(op)}
            if device.type == "cuda":
                providers["compile"] = torch.compile(_eager(op), dynamic=False)
            providers[f"fastp2p[{backend_name_for(device)}]"] = _fused(op, device)
            for provider, fn in providers.items():
                timing = time_ms(functools.partial(fn, x, y), device, quick)
                rows.append(row(op, shape, dtype, provider, timing, moved, copy_gbps,
                                device=str(device), memory_format="channels_last",
                                mode="loss+grad"))
    return rows


if __name__ == "__main__":
    import sys
    for r in collect(quick="--quick" in sys.argv):
        print(f"{r['op']:20s} {str(r['shape']):20s} {r['provider']:20s} "
              f"{r['median_ms']:9.4f} ms {r['gbps']:8.1f} GB/s {r['copy_fraction']:6.1%}")
