"""PyTorch ops that one Triton norm-act backward launches besides its own kernels, per layer.

For every norm layer of U-Net-256 (ngf 64, 256x256) and the 70x70 PatchGAN (ndf 64), at the
batch sizes given, with batch and instance norm (as the reference builds them: batch norm
affine, instance norm not), this calls ``fastp2p.kernels.norm_act.norm_act_bwd`` on meta tensors
with the launch decisions it makes for a CUDA GPU of ``--sms`` multiprocessors (tile sizes,
one-pass or split, number of splits), every Triton kernel replaced by a stub that counts its
launches, and counts the ATen ops it dispatches (views and allocations left out: they launch
nothing). No GPU is needed. ``--param-dtype bfloat16`` shows the casts a low-precision affine
adds.

    python benchmarks/count_norm_act_bwd_ops.py [--batch-sizes 1,64] [--sms 132]
"""
import argparse
import collections
import contextlib
import sys
from unittest import mock

import torch

from fastp2p.kernels import grid
from fastp2p.kernels import norm_act as kernels
from fastp2p.reference.discriminators import NLayerDiscriminator
from fastp2p.reference.norm import get_norm_layer
from fastp2p.reference.unet import UnetGenerator
from op_counter import OpCounter

H200_SMS = 132
BACKWARDS_PER_STEP = {"unet": 1, "patchgan": 3}  # D: real and fake in its step, fake in G's


class _KernelStub:
    """Stands in for a Triton kernel: ``stub[grid](...)`` counts one launch (and appends the
    kernel's name to ``order`` when given)."""

    def __init__(self, name, launches, order):
        self.name, self.launches, self.order = name, launches, order

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches[0] += 1
            if self.order is not None:
                self.order.append(self.name)
        return launch


def norm_layer_shapes(norm: str, batch: int):
    """(name, (N, C, H, W)) of the input of every norm layer, in forward order."""
    layer = get_norm_layer(norm)
    networks = {"unet": UnetGenerator(3, 3, 8, 64, norm_layer=layer, use_dropout=True),
                "patchgan": NLayerDiscriminator(6, 64, 3, norm_layer=layer)}
    inputs = {"unet": (batch, 3, 256, 256), "patchgan": (batch, 6, 256, 256)}
    shapes = []
    for net_name, net in networks.items():
        net = net.to("meta")
        hooks = [m.register_forward_pre_hook(
            lambda m, args, net_name=net_name: shapes.append((net_name, tuple(args[0].shape))))
            for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d,
                                                     torch.nn.InstanceNorm2d))]
        with torch.no_grad():
            net(torch.empty(inputs[net_name], device="meta"))
        for hook in hooks:
            hook.remove()
    return shapes


def count_backward(shape, norm: str, act_dtype, param_dtype, affine=None):
    """Counter of the ATen ops one backward call at ``shape`` dispatches (inside
    ``gpu_decisions``); ``affine`` defaults to the reference's (batch norm only)."""
    n, c, h, w = shape
    x = torch.empty(shape, device="meta", dtype=act_dtype).contiguous(
        memory_format=torch.channels_last)
    grad = torch.empty_like(x)
    affine = norm == "batch" if affine is None else affine
    weight = torch.empty(c, device="meta", dtype=param_dtype) if affine else None
    bias = torch.empty(c, device="meta", dtype=param_dtype) if affine else None
    stats = (c,) if norm == "batch" else (n, c)
    mean = torch.empty(stats, device="meta")
    rstd = torch.empty(stats, device="meta")
    with OpCounter() as counter:
        kernels.norm_act_bwd(grad, x, weight, bias, mean, rstd, norm=norm, activation="relu",
                             slope=0.0, dropout_p=0.0, seed=0, offset=0, training=True)
    return counter.ops


@contextlib.contextmanager
def gpu_decisions(sms: int = H200_SMS, order=None):
    """Inside: every Triton kernel of the module is a stub that counts its launches (the
    yielded one-element list; their names appended to the list ``order`` if given), and the
    launchers decide as for a CUDA GPU with ``sms`` multiprocessors; everything is restored on
    exit."""
    launches = [0]
    with contextlib.ExitStack() as stack:
        for name in dir(kernels):
            if name.endswith("_kernel"):  # jitted, or interpreted under TRITON_INTERPRET
                stack.enter_context(mock.patch.object(kernels, name, _KernelStub(name, launches,
                                                                               order)))
        stack.enter_context(mock.patch.object(kernels, "_interpreted", lambda x: False))
        # the count never touches a GPU (nor reads a meta tensor's device index)
        stack.enter_context(mock.patch.object(grid, "sm_count", lambda device: sms))
        yield launches


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--sms", type=int, default=H200_SMS,
                        help="multiprocessors of the GPU the split decisions are made for")
    parser.add_argument("--param-dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)
    with gpu_decisions(args.sms) as launches:
        if hasattr(kernels, "_counters"):  # the arrival counters' one zeros, once per process
            kernels._counters(torch.device("meta"), 1)
        _print_counts(args, launches)
    return 0


def _print_counts(args, launches):
    param_dtype = getattr(torch, args.param_dtype)
    print(f"bf16 activations, {args.param_dtype} affine, {args.sms} SMs; per backward call: "
          "Triton launches + PyTorch ops")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for norm in ("batch", "instance"):
            totals = collections.Counter()
            triton_total = torch_total = torch_per_step = 0
            for net, shape in norm_layer_shapes(norm, batch):
                before = launches[0]
                ops = count_backward(shape, norm, torch.bfloat16, param_dtype)
                triton_launches = launches[0] - before
                triton_total += triton_launches
                torch_total += sum(ops.values())
                torch_per_step += BACKWARDS_PER_STEP[net] * sum(ops.values())
                totals.update({f"{net}:{k}": v for k, v in ops.items()})
                print(f"  batch {batch:3d} {norm:8s} {net:8s} {str(shape):22s} Triton "
                      f"{triton_launches}  PyTorch {sum(ops.values())} {dict(ops) or ''}")
            print(f"batch {batch} {norm}: {triton_total} Triton launches, {torch_total} PyTorch "
                  f"ops over the layers (once each) {dict(totals) or ''}; per training step "
                  f"(the PatchGAN's backward 3 times): {torch_per_step} PyTorch ops")


if __name__ == "__main__":
    sys.exit(main())
