"""Inference throughput: ``fastp2p.UNet`` against the reference module, same weights and input.

GPU: bf16 autocast, channels-last, batch 1 and 64; CPU: fp32 NCHW, batch 1. Both modules run in
eval mode under ``torch.inference_mode`` with identical settings, so the ratio is the modules'.
"""
from dataclasses import dataclass

import torch

from fastp2p.bench.networks import NetworkConfig, build_generator, make_batch
from fastp2p.bench.runner import Job
from fastp2p.bench.timing import benchmark, cudnn_benchmark

MODULES = ("reference", "fastp2p")


@dataclass(frozen=True)
class InferenceCase:
    device: str
    precision: str
    channels_last: bool
    batch_size: int


def inference_cases(device: str, *, quick: bool):
    """GPU cases only when the run's device is CUDA; the CPU fp32 batch-1 case always."""
    cases = []
    if torch.device(device).type == "cuda" and not quick:
        cases += [InferenceCase(device, "bf16", True, batch) for batch in (1, 64)]
    cases.append(InferenceCase("cpu", "fp32", False, 1))
    return cases


def inference_job(module_name: str, case: InferenceCase, config: NetworkConfig,
                  rep_ms: float) -> Job:
    identity = {"module": module_name, "device": torch.device(case.device).type,
                "precision": case.precision, "channels_last": case.channels_last,
                "batch_size": case.batch_size}

    def run():
        cuda = torch.device(case.device).type == "cuda"
        torch.manual_seed(0)
        from fastp2p.reference import init_weights
        model = init_weights(build_generator(config, fast=module_name == "fastp2p"),
                             "normal", 0.02)
        memory_format = torch.channels_last if case.channels_last else torch.contiguous_format
        model = model.to(case.device, memory_format=memory_format).eval()
        image, _ = make_batch(config, case.batch_size, case.device)
        image = image.contiguous(memory_format=memory_format)
        autocast = torch.autocast(torch.device(case.device).type, dtype=torch.bfloat16,
                                  enabled=case.precision == "bf16")
        if cuda:
            torch.cuda.reset_peak_memory_stats(case.device)

        def forward():
            with torch.inference_mode(), autocast:
                model(image)

        with cudnn_benchmark(cuda):
            timing = benchmark(forward, device=case.device, warmup_ms=rep_ms / 4,
                               rep_ms=rep_ms, flush_l2=False)
        peak = torch.cuda.max_memory_allocated(case.device) if cuda else None
        return [{"ms": timing.median_ms, "ms_p20": timing.p20_ms, "ms_p80": timing.p80_ms,
                 "calls": timing.count,
                 **timing.throughput(case.batch_size),
                 "peak_memory_bytes": peak}]

    label = (f"{module_name} UNet {case.device} {case.precision} batch {case.batch_size}")
    return Job("inference", label, run, identity)


def inference_jobs(device: str, config: NetworkConfig, *, quick: bool, rep_ms: float):
    return [inference_job(name, case, config, rep_ms)
            for case in inference_cases(device, quick=quick) for name in MODULES]


def finalize_inference_rows(rows):
    """Add fastp2p's throughput ratio to the reference module's for each case."""
    def case_key(row):
        return (row["device"], row["precision"], row["channels_last"], row["batch_size"])

    fastp2p = {case_key(row): row["images_per_s"] for row in rows
               if row["module"] == "fastp2p" and row["status"] == "ok"}
    for row in rows:
        ours = fastp2p.get(case_key(row))
        row["fastp2p_ratio"] = (ours / row["images_per_s"]
                                if ours and row["status"] == "ok" else None)
    return rows
