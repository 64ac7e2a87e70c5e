"""The U-Net decoder's transposed convolutions, routed per call.

CPU float32 inference (no gradient needed) has two forms: the GEMM + col2im one (the C++
backend's ``conv_transpose2d_fwd``, from a dense weight) and oneDNN's deconvolution with the
weight packed once (fastp2p.ops.onednn_packed). Neither wins everywhere: on a 2-core Xeon at
batch 1, oneDNN took 0.36 ms against 0.92 for a 1x1 input and 15.8 against 29.8 for 256 -> 64
channels at 64x64, the GEMM form 2.5 against 3.6 ms for 1024 -> 512 at 2x2 and 3.7 against 8.7
for the 3-channel output layer (1 thread; at 2 threads the order of some layers flips:
benchmarks/NOTES.md, "CPU inference with packed oneDNN weights"). So ``cpu_inference_form``
times both on the call's own input, once per layer shape, input shape and thread count, and
keeps the faster (``FASTP2P_CPU_DECONV=gemm|onednn`` fixes the form instead). A module whose
weight is packed runs oneDNN; one with a dense weight, the GEMM form where it applies. On a GPU, a layer whose output channel count is not a multiple of 8 (the U-Net's last, 3
channels) runs with zero-padded channels (``fastp2p.ops.aligned_channels``); everything else —
training on CPUs, other dtypes, unusual module settings — runs the module itself. Same numbers
every way, up to float32 summation order.
"""
import time

import torch
import torch.nn as nn

from fastp2p.kernels.environment import getenv
from fastp2p.ops import onednn_packed, split_conv_backward
from fastp2p.ops.aligned_channels import conv_transpose2d_channel_padded, pads_output
from fastp2p.ops.backends import backend_for

FORM_ENV_VAR = "FASTP2P_CPU_DECONV"
CPU_FORMS = ("gemm", "onednn")
_TIMED_ROUNDS = 3
_ONE_ROUND_SECONDS = 0.02


def _gemm_form_applies(module: nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    if not (x.is_cpu and x.dtype == torch.float32 and x.dim() == 4):
        return False
    params = [p for p in (module.weight, module.bias) if p is not None]
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return False
    square = module.kernel_size[0] == module.kernel_size[1]
    return (square and module.groups == 1 and module.padding_mode == "zeros"
            and module.dilation == (1, 1) and module.output_padding == (0, 0)
            and len(set(module.stride)) == 1 and len(set(module.padding)) == 1
            and all(p.dtype == torch.float32 for p in params)
            and backend_for(x.device).provides("conv_transpose2d_fwd"))


# (in, out, kernel, stride, padding, input shape, threads) -> the faster CPU form measured.
_measured_forms: dict = {}


def _timed(form: str, run) -> float:
    """Seconds one ``run()`` takes (a seam: tests replace it to check the choice)."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _faster_form(module: nn.ConvTranspose2d, x: torch.Tensor) -> str:
    """Both forms run on x, alternately, after one warm-up each; the lower of each form's best
    time of ``_TIMED_ROUNDS`` wins, or of one round where both took over
    ``_ONE_ROUND_SECONDS`` (a batch of 16 256x256 images: 7.7 s for the first U-Net call at 2
    threads with three rounds, against 1.1 s for the next)."""
    with torch.no_grad():
        dense = module.weight.detach().contiguous(memory_format=torch.channels_last)
        packed = onednn_packed.pack(module, dense)
        backend = backend_for(x.device)
        runs = {"gemm": lambda: backend.conv_transpose2d_fwd(
                    x, dense, module.bias, stride=module.stride[0], padding=module.padding[0]),
                "onednn": lambda: onednn_packed.run(module, x, packed, module.bias)}
        for run in runs.values():
            run()
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(_TIMED_ROUNDS):
            for form, run in runs.items():
                best[form] = min(best[form], _timed(form, run))
            if min(best.values()) > _ONE_ROUND_SECONDS:
                break  # runs this long are timed well enough once (large inputs)
    return min(CPU_FORMS, key=best.__getitem__)


def cpu_inference_form(module: nn.ConvTranspose2d, x: torch.Tensor) -> str:
    """The form ``module(x)`` runs in for CPU float32 inference: "gemm", "onednn" (its weight
    packed), or "module" where neither applies. The choice is measured on the first call of
    each layer shape, input shape and thread count (two warm-ups and up to six timed runs of
    the layer: ``_faster_form``), or fixed by ``FASTP2P_CPU_DECONV``."""
    gemm, onednn = _gemm_form_applies(module, x), onednn_packed.applies(module, x)
    if not (gemm and onednn):
        return "gemm" if gemm else "onednn" if onednn else "module"
    forced = getenv(FORM_ENV_VAR)
    if forced:
        if forced not in CPU_FORMS:
            raise ValueError(f"{FORM_ENV_VAR}={forced!r}: expected one of {', '.join(CPU_FORMS)} "
                             f"(or unset, to measure per layer)")
        return forced
    key = (module.in_channels, module.out_channels, module.kernel_size, module.stride,
           module.padding, tuple(x.shape), torch.get_num_threads())
    form = _measured_forms.get(key)
    if form is None:
        form = _measured_forms[key] = _faster_form(module, x)
    return form


def conv_transpose2d(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``: through oneDNN when its weight is packed (fastp2p.ops.onednn_packed), the
    C++ GEMM + col2im form where it applies (see the module doc), on a GPU with its output
    channels padded to a multiple of 8 where they are not (``fastp2p.ops.aligned_channels``);
    inside the engine's step with ``split_conv_backward=True``, with its backward split
    (fastp2p.ops.split_conv_backward)."""
    if onednn_packed.is_packed(module.weight):
        return onednn_packed.run(module, x, module.weight, module.bias)
    if _gemm_form_applies(module, x):
        return backend_for(x.device).conv_transpose2d_fwd(
            x, module.weight, module.bias, stride=module.stride[0], padding=module.padding[0])
    if pads_output(module, x):
        return conv_transpose2d_channel_padded(module, x)
    if split_conv_backward.module_applies(module, x):
        return split_conv_backward.module_convolution(module, x)
    return module(x)
