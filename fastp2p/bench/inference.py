"""Inference throughput of the U-Net: fastp2p's ways of running it against the reference's.

Every variant runs the same weights and input, under ``torch.no_grad()`` as a translation loop
does (``fastp2p test``, the reference's test.py), in eval mode and in train mode (the reference's
test.py keeps the generator in train mode: batch statistics, dropout as noise):

- ``reference``: the reference module, eager, fp32 NCHW (what its users run), fp32 channels-last,
  and on a GPU bf16 autocast channels-last;
- ``reference compile`` / ``reference compile reduce-overhead``: torch.compile of the reference in
  the case's best layout (only when the matching training peer, compile-default /
  compile-reduce-overhead, is in the run's ``--peers``; reduce-overhead only on a GPU, neither
  under ``--quick``: ``omitted_compile_modes`` says why, and the run's notes name them);
- ``fastp2p``: fastp2p.UNet eager, as a user gets it (eval BatchNorm folded into the convs);
  ``fastp2p unfolded``: the same with folding off (eval only, to show what folding buys);
  ``fastp2p graphed``: ``fastp2p.graphed(UNet)``, one CUDA-graph replay per call (GPU only).

On a CPU each case runs at 2 threads and at every core of the machine (one setting when the
machine has 2). In eval mode each variant's output is checked against the reference's before it
is timed; in train mode (dropout: each module draws its own masks) for its shape and finiteness.
``setup_seconds``: building the variant plus its first call (torch.compile, CUDA-graph capture,
folding and packing happen there), as training rows record theirs. Ratios: every non-fastp2p
row gets ``fastp2p_ratio``, the fastest fastp2p variant of the same case over it.
"""
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from fastp2p.bench.defaults import (GPU_INFERENCE_BATCH_SIZES, INFERENCE_COMPILE_MODES,
                                    INFERENCE_TRAIN_MODES)
from fastp2p.bench.networks import NetworkConfig, build_generator, make_batch
from fastp2p.bench.runner import Job
from fastp2p.bench.timing import benchmark, cudnn_benchmark
from fastp2p.cpu_info import usable_cpus

FP32_CHECK, BF16_CHECK = 1e-4, 2e-2  # relative error bounds vs the fp32 reference (DESIGN §5)


@dataclass(frozen=True)
class Variant:
    module: str          # the row's name: "reference", "fastp2p graphed", ...
    fast: bool           # fastp2p.UNet, else the reference module
    execution: str       # "eager" | "unfolded" | "graphed" | a torch.compile mode
    precision: str       # "fp32" | "bf16"
    channels_last: bool
    eval_only: bool = False


@dataclass(frozen=True)
class InferenceCase:
    device: str
    batch_size: int
    train: bool
    threads: int | None = None  # CPU only


def omitted_compile_modes(device_type: str, compile_modes: tuple, quick: bool) -> dict:
    """{mode: why} for the torch.compile modes asked for that get no inference variant: the
    run's notes say so rather than leaving them out silently."""
    if quick:
        return {mode: "--quick times the eager variants only" for mode in compile_modes}
    if device_type != "cuda":
        return {mode: "its CUDA graphs need a GPU" for mode in compile_modes
                if mode == "reduce-overhead"}
    return {}


def _variants(device_type: str, compile_modes: tuple, quick: bool):
    """The variants of a case; the torch.compile ones are the modes ``omitted_compile_modes``
    leaves in (none under --quick), decided there only."""
    cuda = device_type == "cuda"
    best = ("bf16", True) if cuda else ("fp32", True)
    omitted = omitted_compile_modes(device_type, compile_modes, quick)
    compiled = [Variant("reference compile" + ("" if mode == "default" else f" {mode}"), False,
                        mode, *best) for mode in compile_modes if mode not in omitted]
    if quick:  # the smoke test: each module's eager path, in fp32 NCHW
        return [Variant("reference", False, "eager", "fp32", False), *compiled,
                Variant("fastp2p", True, "eager", "fp32", False),
                Variant("fastp2p unfolded", True, "unfolded", "fp32", False, eval_only=True)]
    variants = [Variant("reference", False, "eager", "fp32", False),
                Variant("reference", False, "eager", "fp32", True)]
    if cuda:
        variants.append(Variant("reference", False, "eager", "bf16", True))
    variants += compiled
    if not cuda:
        variants.append(Variant("fastp2p", True, "eager", "fp32", False))
    variants += [Variant("fastp2p", True, "eager", *best),
                 Variant("fastp2p unfolded", True, "unfolded", *best, eval_only=True)]
    if cuda:
        variants.append(Variant("fastp2p graphed", True, "graphed", *best))
    return variants


def inference_cases(device: str, *, quick: bool):
    """GPU: batch 1, 16, 64; CPU: batch 1 and 4 at 2 threads and at every usable core (the
    affinity mask and the container's CPU quota: cpu_info.usable_cpus; quick: batch 1, the
    current thread count); eval and train mode each."""
    device_type = torch.device(device).type
    if quick:
        return [InferenceCase("cpu", 1, train) for train in INFERENCE_TRAIN_MODES]
    if device_type == "cuda":
        return [InferenceCase(device, batch, train) for batch in GPU_INFERENCE_BATCH_SIZES
                for train in INFERENCE_TRAIN_MODES]
    cores = usable_cpus()
    threads = sorted({min(2, cores), cores})
    return [InferenceCase("cpu", batch, train, n) for n in threads for batch in (1, 4)
            for train in INFERENCE_TRAIN_MODES]


def _prepare(variant: Variant, model):
    """The callable a variant times."""
    if variant.execution == "graphed":
        from fastp2p.nn.graph_replay import graphed
        return graphed(model)
    if variant.execution in INFERENCE_COMPILE_MODES:
        return torch.compile(model, mode=variant.execution)
    return model


def inference_job(variant: Variant, case: InferenceCase, config: NetworkConfig,
                  rep_ms: float) -> Job:
    device_type = torch.device(case.device).type
    identity = {"module": variant.module, "execution": variant.execution,
                "device": device_type, "precision": variant.precision,
                "channels_last": variant.channels_last, "batch_size": case.batch_size,
                "mode": "train" if case.train else "eval", "threads": case.threads,
                # pix2pix's default generator has dropout: train mode then draws noise
                "dropout": config.use_dropout}

    def run():
        from fastp2p.nn.folding import folding_disabled
        from fastp2p.reference import init_weights

        cuda = device_type == "cuda"
        threads = torch.get_num_threads()
        if case.threads:
            torch.set_num_threads(case.threads)
        try:
            began = time.monotonic()
            torch.manual_seed(0)
            memory_format = (torch.channels_last if variant.channels_last
                             else torch.contiguous_format)
            model = init_weights(build_generator(config, fast=variant.fast), "normal", 0.02)
            model = model.to(case.device, memory_format=memory_format).train(case.train)
            image, _ = make_batch(config, case.batch_size, case.device)
            image = image.contiguous(memory_format=memory_format)
            forward = _prepare(variant, model)
            autocast = torch.autocast(device_type, dtype=torch.bfloat16,
                                      enabled=variant.precision == "bf16")
            if cuda:
                torch.cuda.reset_peak_memory_stats(case.device)

            def call():
                with torch.no_grad(), autocast:
                    return forward(image)

            unfolded = variant.execution == "unfolded"
            with cudnn_benchmark(cuda), folding_disabled() if unfolded else nullcontext():
                # the first call: compilation, graph capture, folding, weight packing
                output = call()
                if cuda:
                    torch.cuda.synchronize(case.device)
                setup_seconds = time.monotonic() - began
                if case.train:
                    _check_train_output(output, config, image)
                error = None if case.train else _check_against_reference(output, config, image)
                timing = benchmark(call, device=case.device, warmup_ms=rep_ms / 4,
                                   rep_ms=rep_ms, flush_l2=False)
        finally:
            torch.set_num_threads(threads)
        peak = torch.cuda.max_memory_allocated(case.device) if cuda else None
        return [{"ms": timing.median_ms, "ms_p20": timing.p20_ms, "ms_p80": timing.p80_ms,
                 "calls": timing.count, "setup_seconds": setup_seconds,
                 **timing.throughput(case.batch_size),
                 "relative_error_vs_reference": error, "peak_memory_bytes": peak}]

    label = (f"{variant.module} ({variant.precision}"
             f"{', channels-last' if variant.channels_last else ''}) UNet {case.device} "
             f"batch {case.batch_size} {'train' if case.train else 'eval'}"
             f"{f', {case.threads} threads' if case.threads else ''}")
    return Job("inference", label, run, identity)


def _check_train_output(output, config, image):
    """A train-mode output has no reference to match (dropout draws other masks in each
    module), so it is checked for its shape and for being finite; AssertionError else."""
    shape = (image.shape[0], config.output_nc, *image.shape[2:])
    if tuple(output.shape) != shape or not torch.isfinite(output).all():
        raise AssertionError(f"train-mode output of shape {tuple(output.shape)} (want {shape}) "
                             "or not finite")


def _check_against_reference(output, config, image):
    """Relative error of ``output`` against the reference module in fp32 on the same weights and
    input (eval mode); raises past DESIGN §5's bound for the output's dtype."""
    from fastp2p.reference import init_weights

    torch.manual_seed(0)
    reference = init_weights(build_generator(config, fast=False), "normal", 0.02)
    reference = reference.to(image.device).eval()
    with torch.no_grad():
        expected = reference(image.contiguous())
    error = ((output.float() - expected).norm() / expected.norm()).item()
    bound = FP32_CHECK if output.dtype == torch.float32 else BF16_CHECK
    if not error <= bound:
        raise AssertionError(f"output differs from the reference module's: relative error "
                             f"{error:.2e} > {bound:.0e}")
    return error


def inference_jobs(device: str, config: NetworkConfig, *, quick: bool, rep_ms: float,
                   compile_modes: tuple = ()):
    """(jobs, compiled jobs): the torch.compile variants apart, to run last (slow to build, so
    they are what a --time-budget cuts)."""
    jobs, compiled = [], []
    for case in inference_cases(device, quick=quick):
        for variant in _variants(torch.device(case.device).type, compile_modes, quick):
            if case.train and variant.eval_only:
                continue
            job = inference_job(variant, case, config, rep_ms)
            (compiled if variant.execution in INFERENCE_COMPILE_MODES else jobs).append(job)
    return jobs, compiled


def _case_key(row):
    return (row["device"], row["batch_size"], row.get("mode"), row.get("threads"))


def finalize_inference_rows(rows):
    """Every non-fastp2p row: ``fastp2p_ratio`` = the fastest fastp2p variant of its case over it
    (named in ``fastp2p_best``)."""
    best = {}
    for row in rows:
        if row["module"].startswith("fastp2p") and row["status"] == "ok":
            key = _case_key(row)
            if key not in best or row["images_per_s"] > best[key]["images_per_s"]:
                best[key] = row
    for row in rows:
        ours = best.get(_case_key(row))
        fast = row["module"].startswith("fastp2p")
        row["fastp2p_ratio"] = (ours["images_per_s"] / row["images_per_s"]
                                if ours and not fast and row["status"] == "ok" else None)
        if ours and not fast:
            row["fastp2p_best"] = (f"{ours['module']} ({ours['precision']}"
                                   f"{', channels-last' if ours['channels_last'] else ''})")
    return rows
