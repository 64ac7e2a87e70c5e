"""Micro-benchmark of the fused norm-act kernels on every norm layer shape of U-Net-256 and the
PatchGAN (256x256 input), batch 1 and 64, bf16 channels-last, against PyTorch eager and
torch.compile of the same computation, with the copy bandwidth of the same run as yardstick.

- ``norm_act`` (encoder / PatchGAN): conv output -> InstanceNorm2d | BatchNorm2d -> LeakyReLU.
- ``norm_act_concat`` (decoder): cat([relu(skip), relu(norm(conv output))]) — eager builds it
  with torch.cat; fastp2p writes both halves into one buffer.

``collect(quick)`` returns the rows (the benchmark suite calls it); ``quick=True`` runs tiny
shapes, on the CPU when there is no GPU (there fastp2p is whatever backend the dispatcher picks,
named in the row). ``pytest benchmarks/`` runs pytest-benchmark on one shape
(test_micro_benchmarks.py).
"""
import functools

import torch
import torch.nn.functional as F

from fastp2p.bench.peer_specs import environment
from fastp2p.ops import backend_name_for, norm_act, norm_act_concat
from fastp2p.ops.backends import ENV_VAR as BACKEND_ENV_VAR

try:
    from kernel_timing import copy_bandwidth_gbps, default_device, row, time_ms
except ImportError:  # imported as benchmarks.bench_norm_act
    from benchmarks.kernel_timing import copy_bandwidth_gbps, default_device, row, time_ms

# (op, channels, side): conv outputs that a norm-act consumes, U-Net-256 then PatchGAN n3.
LAYERS = (
    [("norm_act", c, s) for c, s in [(128, 64), (256, 32), (512, 16), (512, 8), (512, 4),
                                     (512, 2)]]
    + [("norm_act_concat", c, s) for c, s in [(512, 2), (512, 4), (512, 8), (512, 16),
                                              (256, 32), (128, 64), (64, 128)]]
    + [("norm_act", c, s) for c, s in [(128, 64), (256, 32), (512, 31)]]
)
QUICK_LAYERS = [("norm_act", 16, 16), ("norm_act_concat", 16, 8), ("norm_act", 32, 4)]


def _eager(op, norm):
    def normalize(y, weight, bias, running_mean, running_var):
        if norm == "instance":
            return F.instance_norm(y, eps=1e-5)
        return F.batch_norm(y, running_mean, running_var, weight, bias, training=True,
                            momentum=0.1, eps=1e-5)

    if op == "norm_act":
        return lambda skip, y, *p: F.leaky_relu(normalize(y, *p), 0.2)
    return lambda skip, y, *p: torch.cat([F.relu(skip), F.relu(normalize(y, *p))], 1)


def _fused(op, norm):
    def call(skip, y, weight, bias, running_mean, running_var):
        kwargs = dict(norm=norm, eps=1e-5)
        if norm == "batch":
            kwargs.update(weight=weight, bias=bias, running_mean=running_mean,
                          running_var=running_var)
        if op == "norm_act":
            return norm_act(y, activation="leaky_relu", slope=0.2, **kwargs)
        return norm_act_concat(skip, y, activation="relu", **kwargs)
    return call


def _inputs(op, batch, channels, side, dtype, device):
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (batch, channels, side, side)

    def make():
        return torch.randn(shape, generator=gen, device=device).to(dtype).contiguous(
            memory_format=torch.channels_last)

    params = (torch.rand(channels, device=device) + 0.5, torch.rand(channels, device=device),
              torch.zeros(channels, device=device), torch.ones(channels, device=device))
    skip = make() if op == "norm_act_concat" else None
    moved = 2 * (2 if skip is not None else 1) * make().numel() * make().element_size()
    return (skip, make(), *params), moved


def _forcing(backend, fn):
    """fn with FASTP2P_BACKEND=backend around each call, so that its row times the kernels
    it names: unforced, CPU float32 training runs PyTorch's own ops (fastp2p.ops.norm_act_torch).
    The forward picks the path; the backward follows it."""
    def call(*args):
        with environment({BACKEND_ENV_VAR: backend}):
            return fn(*args)
    return call


def _providers(op, norm, device, quick):
    providers = {"eager": _eager(op, norm)}
    if device.type == "cuda":
        providers["compile"] = torch.compile(_eager(op, norm), dynamic=False)
    backend = backend_name_for(device)
    fused = _fused(op, norm)
    providers[f"fastp2p[{backend}]"] = fused if device.type == "cuda" else _forcing(backend, fused)
    return providers


def _forward_backward(fn, args):
    """A call that runs fn forward and backward (inputs and affine params require grad)."""
    skip, y, weight, bias, running_mean, running_var = args
    leaves = [t.detach().requires_grad_() if t is not None else None
              for t in (skip, y, weight, bias)]
    out = fn(*leaves, running_mean, running_var)
    grad = torch.randn_like(out)

    def call():
        for t in leaves:
            if t is not None:
                t.grad = None
        fn(*leaves, running_mean, running_var).backward(grad)
    return call


def collect(quick: bool = False) -> list:
    """Rows of (op, shape, dtype, provider, mode, median/p20/p80 ms, GB/s, fraction of copy).

    Bytes are the logical minimum: forward reads the inputs and writes the output once;
    forward+backward adds one read of the inputs and of the output gradient and one write of
    the input gradients."""
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    copy_gbps = copy_bandwidth_gbps(device)
    layers = QUICK_LAYERS if quick else LAYERS
    rows = []
    for norm in ("instance", "batch"):
        for batch in ((1, 2) if quick else (1, 64)):
            for op, channels, side in layers:
                args, moved = _inputs(op, batch, channels, side, dtype, device)
                for provider, fn in _providers(op, norm, device, quick).items():
                    for mode in ("forward", "forward+backward"):
                        if mode == "forward":
                            with torch.no_grad():
                                timing = time_ms(functools.partial(fn, *args), device, quick)
                        else:
                            timing = time_ms(_forward_backward(fn, args), device, quick)
                        rows.append(row(f"{op}[{norm}]", args[1].shape, dtype, provider, timing,
                                        moved * (1 if mode == "forward" else 2.5), copy_gbps,
                                        device=str(device), memory_format="channels_last",
                                        mode=mode))
    return rows


if __name__ == "__main__":
    import sys
    for r in collect(quick="--quick" in sys.argv):
        print(f"{r['op']:28s} {str(r['shape']):22s} {r['provider']:20s} {r['mode']:17s}"
              f"{r['median_ms']:9.4f} ms {r['gbps']:8.1f} GB/s {r['copy_fraction']:6.1%}")
