"""Launches of the Triton norm-act forward per training step: its Triton kernels and the PyTorch
ops it runs besides them, BatchNorm's batch count included.

For every norm layer of U-Net-256 (ngf 64, 256x256) and the 70x70 PatchGAN (ndf 64), at the
batch sizes given, with batch and instance norm as the reference builds them, this does what
the fused networks do per layer in a training forward — ``fastp2p.nn.fused.norm_kwargs`` of the
train-mode module, then ``fastp2p.kernels.norm_act.norm_act_fwd`` with those arguments — on
meta tensors, with the launch decisions the launcher makes for a CUDA GPU of ``--sms``
multiprocessors (one-pass or split, number of splits), every Triton kernel replaced by a stub
that counts its launches (``count_norm_act_bwd_ops.gpu_decisions``), and counts the ATen ops
dispatched (views and allocations left out: they launch nothing). Per step the U-Net's forward
runs once and the PatchGAN's 3 times (D step: fake and real pair; G step: fake pair). The
ops layer's own launches (a dropout layer's ``stack`` of its device seed and offset) are not
counted: they are not the norm's. No GPU is needed; it runs against whichever fastp2p is on
the path (the numbers before a change come from running it on the old tree).

    python benchmarks/count_norm_act_fwd_launches.py [--batch-sizes 1,64] [--sms 132]
"""
import argparse
import collections
import sys

import torch

from count_norm_act_bwd_ops import BACKWARDS_PER_STEP, H200_SMS, gpu_decisions
from fastp2p.kernels import norm_act as kernels
from fastp2p.nn.fused import norm_kwargs
from op_counter import OpCounter

FORWARDS_PER_STEP = BACKWARDS_PER_STEP  # the same passes: G once, D 3 times


def norm_modules(norm: str, batch: int):
    """(network, train-mode norm module, its input shape) of every norm layer, in forward
    order, on the meta device."""
    from fastp2p.reference.discriminators import NLayerDiscriminator
    from fastp2p.reference.norm import get_norm_layer
    from fastp2p.reference.unet import UnetGenerator
    layer = get_norm_layer(norm)
    networks = {"unet": (UnetGenerator(3, 3, 8, 64, norm_layer=layer, use_dropout=True),
                         (batch, 3, 256, 256)),
                "patchgan": (NLayerDiscriminator(6, 64, 3, norm_layer=layer),
                             (batch, 6, 256, 256))}
    found = []
    for net_name, (net, shape) in networks.items():
        net = net.to("meta").train()
        hooks = [m.register_forward_pre_hook(
            lambda m, args, net_name=net_name: found.append((net_name, m, tuple(args[0].shape))))
            for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d,
                                                     torch.nn.InstanceNorm2d))]
        with torch.no_grad():
            net(torch.empty(shape, device="meta"))
        for hook in hooks:
            hook.remove()
    return found


def count_forward(module, shape):
    """Counter of the ATen ops one training forward of ``module`` at ``shape`` dispatches:
    its norm_act arguments (norm_kwargs), then the Triton launcher (inside gpu_decisions)."""
    x = torch.empty(shape, device="meta", dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    out = torch.empty_like(x)
    with OpCounter() as counter:
        kwargs = dict(dict(training=True, momentum=0.1), **norm_kwargs(module))
        weight, bias = kwargs.pop("weight", None), kwargs.pop("bias", None)
        running = kwargs.pop("running_mean", None), kwargs.pop("running_var", None)
        kernels.norm_act_fwd(x, weight, bias, *running, out, 0, activation="leaky_relu",
                             slope=0.2, dropout_p=0.0, seed=0, offset=0, **kwargs)
    return counter.ops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--sms", type=int, default=H200_SMS,
                        help="multiprocessors of the GPU the split decisions are made for")
    args = parser.parse_args(argv)
    print(f"bf16 activations, {args.sms} SMs; per training forward of each norm layer: Triton "
          "launches + PyTorch ops")
    with gpu_decisions(args.sms) as launches:
        if hasattr(kernels, "_counters"):  # the arrival counters' one zeros, once per process
            kernels._counters(torch.device("meta"), 1)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            for norm in ("batch", "instance"):
                _print_norm(batch, norm, launches)
    return 0


def _print_norm(batch, norm, launches):
    per_step = collections.Counter()
    for net, module, shape in norm_modules(norm, batch):
        before = launches[0]
        ops = count_forward(module, shape)
        triton_launches = launches[0] - before
        per_step["Triton"] += FORWARDS_PER_STEP[net] * triton_launches
        per_step.update({op: FORWARDS_PER_STEP[net] * n for op, n in ops.items()})
        print(f"  batch {batch:3d} {norm:8s} {net:8s} {str(shape):22s} Triton "
              f"{triton_launches}  PyTorch {sum(ops.values())} {dict(ops) or ''}")
    total = sum(per_step.values())
    print(f"batch {batch} {norm}: per training step (the PatchGAN's forward 3 times) {total} "
          f"launches: {dict(per_step)}")


if __name__ == "__main__":
    sys.exit(main())
