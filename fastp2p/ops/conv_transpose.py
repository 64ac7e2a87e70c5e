"""The U-Net decoder's transposed convolutions, routed per call.

CPU float32 inference (no gradient needed) has three forms: the GEMM + col2im one (the C++
backend's ``conv_transpose2d_fwd``, from a dense weight), oneDNN's deconvolution with the weight
packed once (fastp2p.ops.onednn_packed), and the four output phases as one packed stride-1
convolution whose results are interleaved into the output (fastp2p.ops.deconv_phases). None
wins everywhere (per-layer times in benchmarks/NOTES.md, "CPU inference with packed oneDNN
weights" and "The transposed convolution as four phases"). So ``cpu_inference_form`` times the
forms on the call's own input, once per layer shape, input size class and thread count, each
writing into an output buffer as the decoder does, and keeps the fastest, in this process and in
a file for the next ones (``FASTP2P_CPU_DECONV=gemm|onednn|phases`` fixes the form instead,
``measure`` keeps it in this process only). A stand-in module of the
phases runs them; one whose weight is packed runs oneDNN; one with a dense weight, the GEMM form
where it applies. On a GPU, a layer whose output channel count is not a multiple of 8 (the
U-Net's last, 3 channels) runs with zero-padded channels (``fastp2p.ops.aligned_channels``);
everything else — training on CPUs, other dtypes, unusual module settings — runs the module
itself. Same numbers every way, up to float32 summation order.
"""
import functools
import time

import torch
import torch.nn as nn

from fastp2p.fork_safe import ForkSafeLock
from fastp2p.kernels.environment import getenv
from fastp2p.ops import deconv_phases, onednn_packed, split_conv_backward
from fastp2p.ops.aligned_channels import conv_transpose2d_channel_padded, pads_output
from fastp2p.ops.backends import backend_for
from fastp2p.ops.remembered_forms import RememberedForms
from fastp2p.ops.stand_ins import PACKED, PHASES, stand_in

FORM_ENV_VAR = "FASTP2P_CPU_DECONV"
CPU_FORMS = ("gemm", "onednn", "phases")
# The weight layout (fastp2p.ops.stand_ins) each form runs from.
LAYOUT_OF_FORM = {"gemm": torch.channels_last, "onednn": PACKED, "phases": PHASES}
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
            and backend_for(x.device, x.dtype).provides("conv_transpose2d_fwd"))


# ``_choice_key`` -> the fastest CPU form measured; at most ``_MAX_MEASURED`` entries.
_measured_forms: dict = {}
_MAX_MEASURED = 1024
# Held while a choice is made (``_chosen_once``): threads whose first calls need the same key at
# once each measured, and each ran the form it measured (the same input gave outputs differing in
# rounding within one process). One at a time for every key: no form is timed against another
# thread's measuring.
_choosing = ForkSafeLock()
# The forms measured by earlier processes on this machine (unless FASTP2P_CPU_DECONV=measure).
_remembered_forms = RememberedForms()
MEASURE_ONLY = "measure"


def _timed(form: str, run) -> float:
    """Seconds one ``run()`` takes (a seam: tests replace it to check the choice)."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _faster_form(module: nn.ConvTranspose2d, x: torch.Tensor, forms) -> str:
    """The ``forms`` run on x in turn, each writing relu(module(x)) into one output buffer as the
    decoder does (``conv_transpose2d_into``), after one warm-up each; the lowest of each form's
    best time of ``_TIMED_ROUNDS`` wins, or of one round where all took over
    ``_ONE_ROUND_SECONDS`` (a batch of 16 256x256 images: 7.7 s for the first U-Net call at 2
    threads with three rounds of two forms, against 1.1 s for the next)."""
    with torch.no_grad():
        out = torch.empty(deconv_phases.output_shape(module, x), memory_format=torch.channels_last)
        runs = {form: functools.partial(
                    conv_transpose2d_into,
                    stand_in(module, module.weight, module.bias, LAYOUT_OF_FORM[form],
                             x.shape),
                    x, out, "relu")
                for form in forms}
        for run in runs.values():
            run()
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(_TIMED_ROUNDS):
            for form, run in runs.items():
                best[form] = min(best[form], _timed(form, run))
            if min(best.values()) > _ONE_ROUND_SECONDS:
                break  # runs this long are timed well enough once (large inputs)
    return min(forms, key=best.__getitem__)


def forced_form() -> str | None:
    """``FASTP2P_CPU_DECONV``'s value (a form of CPU_FORMS, or MEASURE_ONLY), None if unset;
    ValueError for any other value."""
    forced = getenv(FORM_ENV_VAR)
    if forced and forced not in CPU_FORMS + (MEASURE_ONLY,):
        raise ValueError(f"{FORM_ENV_VAR}={forced!r}: expected one of {', '.join(CPU_FORMS)}, "
                         f"or {MEASURE_ONLY} (measured per layer, not remembered), or unset "
                         f"(measured per layer and remembered)")
    return forced or None


def cpu_inference_form(module: nn.ConvTranspose2d, x: torch.Tensor) -> str:
    """The form ``module(x)`` runs in for CPU float32 inference: "gemm", "onednn" (its weight
    packed), "phases", or "module" where none applies. Among the forms that apply, the choice
    is measured on the first call of each layer shape, input size class and thread count
    (``_choice_key``; a warm-up and up to three timed runs of each form: ``_faster_form``), once
    whatever the threads calling (``_chosen_once``), and remembered for later processes on this
    machine (fastp2p.ops.remembered_forms), or fixed by ``FASTP2P_CPU_DECONV`` where that form
    applies (``measure``: measured, not remembered)."""
    forms = [form for form, applies in (("gemm", _gemm_form_applies),
                                        ("onednn", onednn_packed.applies),
                                        ("phases", deconv_phases.applies))
             if applies(module, x)]
    if len(forms) < 2:
        return forms[0] if forms else "module"
    forced = forced_form()
    if forced in forms:
        return forced
    key = _choice_key(module, x, forms)
    form = _measured_forms.get(key)
    return _chosen_once(module, x, forms, key, forced) if form is None else form


def _chosen_once(module: nn.ConvTranspose2d, x: torch.Tensor, forms, key: tuple, forced) -> str:
    """The form for ``key``: remembered, or measured now, under ``_choosing``; a thread that
    waited there takes the choice the first one made. A form measured now is written to the
    remembered file after the lock is let go: that read-modify-write of the whole file need not
    hold up the other threads' choices."""
    measured = None
    with _choosing:
        form = _measured_forms.get(key)
        if form is not None:
            return form
        if len(_measured_forms) >= _MAX_MEASURED:
            _measured_forms.clear()  # a long run over ever new shapes: measure them afresh
        remember = forced != MEASURE_ONLY
        form = _remembered_forms.get(key) if remember else None
        if form not in forms:  # not remembered, or a file entry that does not fit
            form = measured = _faster_form(module, x, forms)
        _measured_forms[key] = form
    if measured is not None and remember:
        _remembered_forms.put(key, measured)
    return form


def _choice_key(module: nn.ConvTranspose2d, x: torch.Tensor, forms) -> tuple:
    """What a measured choice holds for: the layer's shape, the input's batch size and pixel
    count each rounded to its power of two (the forms' times change smoothly with them, and a
    folder of images of many sizes would otherwise be timed image by image), the thread count
    and the forms that apply."""
    n, _, h, w = x.shape
    return (module.in_channels, module.out_channels, module.kernel_size, module.stride,
            module.padding, n.bit_length(), (h * w).bit_length(), torch.get_num_threads(),
            tuple(forms))


def conv_transpose2d_into(module: nn.ConvTranspose2d, x: torch.Tensor, out: torch.Tensor,
                          activation: str) -> torch.Tensor:
    """``out = activation(module(x))`` ("none", "relu" or "tanh"), ``out`` any strided view of
    the output's shape (a channel slice of a concatenation buffer): the phases' stand-in writes
    its interleave there, the other forms write their output."""
    if type(module) is deconv_phases.PhasedConvTranspose2d:
        return deconv_phases.run_into(module, x, out, activation)
    return deconv_phases.write(conv_transpose2d(module, x), out, activation)


def conv_transpose2d_tanh(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh(module(x))`` (the U-Net's output layer); the phases' stand-in applies the
    tanh as it interleaves."""
    if type(module) is deconv_phases.PhasedConvTranspose2d:
        return deconv_phases.run(module, x, "tanh")
    return torch.tanh(conv_transpose2d(module, x))


def conv_transpose2d(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``: as four phases for their stand-in (fastp2p.ops.deconv_phases), through
    oneDNN when its weight is packed (fastp2p.ops.onednn_packed), the
    C++ GEMM + col2im form where it applies (see the module doc), on a GPU with its output
    channels padded to a multiple of 8 where they are not (``fastp2p.ops.aligned_channels``);
    inside the engine's step with ``split_conv_backward=True``, with its backward split
    (fastp2p.ops.split_conv_backward)."""
    if type(module) is deconv_phases.PhasedConvTranspose2d:
        return deconv_phases.run(module, x)
    if onednn_packed.is_packed(module.weight):
        return onednn_packed.run(module, x, module.weight, module.bias)
    if _gemm_form_applies(module, x):
        return backend_for(x.device, x.dtype).conv_transpose2d_fwd(
            x, module.weight, module.bias, stride=module.stride[0], padding=module.padding[0])
    if pads_output(module, x):
        return conv_transpose2d_channel_padded(module, x)
    if split_conv_backward.module_applies(module, x):
        return split_conv_backward.module_convolution(module, x)
    return module(x)
