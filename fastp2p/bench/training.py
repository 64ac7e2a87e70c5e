"""End-to-end training throughput: every peer, every batch size, one process (DESIGN.md §6)."""
import time
from dataclasses import dataclass

import torch

from fastp2p.bench.launches import device_work_per_step
from fastp2p.bench.networks import NetworkConfig, make_batch
from fastp2p.bench.peer_specs import PeerSpec, environment, peer_environment
from fastp2p.bench.peers import build_peer_step
from fastp2p.bench.runner import Job
from fastp2p.bench.timing import cudnn_benchmark, time_steps


@dataclass(frozen=True)
class TrainingSettings:
    config: NetworkConfig
    batch_sizes: tuple
    steps: int
    warmup: int
    device: str


def training_job(spec: PeerSpec, batch_size: int, settings: TrainingSettings) -> Job:
    device = settings.device
    device_type = torch.device(device).type
    options = spec.options(device_type)
    autotune = spec.cudnn_benchmark and device_type == "cuda"
    variables = peer_environment(spec, device_type)
    # PDL acts only from compute capability 9 (fastp2p.kernels.pdl); below, the row is plain.
    pdl = bool(variables) and torch.cuda.get_device_capability(device)[0] >= 9
    identity = {"peer": spec.name, "batch_size": batch_size, "device": device_type,
                "execution": spec.execution, **options, "cudnn_benchmark": autotune,
                **({"pdl": True} if pdl else {})}

    def run():
        cuda = device_type == "cuda"
        with cudnn_benchmark(autotune), environment(variables):
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            real_a, real_b = make_batch(settings.config, batch_size, device)
            began = time.monotonic()
            step = build_peer_step(spec, settings.config, real_a, real_b, device=device)
            for _ in range(settings.warmup):  # compilation, capture, cuDNN autotuning
                step()
            if cuda:
                torch.cuda.synchronize(device)
            setup_seconds = time.monotonic() - began
            timing = time_steps(step, device=device, warmup=0, steps=settings.steps)
            peak = torch.cuda.max_memory_allocated(device) if cuda else None
            work = device_work_per_step(step, device)  # after timing: profiling slows steps
        return [{
            "steps": timing.count, "warmup": settings.warmup,
            "setup_seconds": setup_seconds,
            "step_ms": timing.median_ms, "step_ms_p20": timing.p20_ms,
            "step_ms_p80": timing.p80_ms,
            **timing.throughput(batch_size),
            "peak_memory_bytes": peak, **work,
        }]

    return Job("training", f"{spec.name} batch {batch_size}", run, identity)


def training_jobs(peers, settings: TrainingSettings):
    """(first, compiled): jobs to run before the other sections, and the compiled peers' jobs.

    Compilation is slow and its time hard to predict, so compiled peers run last: the largest
    batch first (peak throughput), then the smallest (where launch overhead shows), then the
    rest; max-autotune, the slowest to build, after the other compiled peers. Under a time
    budget whatever does not fit is reported as skipped rather than crowding out the cheaper
    peers.
    """
    first = [training_job(peer, batch, settings)
             for peer in peers if peer.execution != "compile"
             for batch in settings.batch_sizes]
    by_size = sorted(set(settings.batch_sizes), reverse=True)
    batch_priority = [by_size[0], *by_size[-1:], *by_size[1:-1]]
    compiled = sorted(((peer, batch) for peer in peers if peer.execution == "compile"
                       for batch in settings.batch_sizes),
                      key=lambda item: (item[0].compile_mode == "max-autotune-no-cudagraphs",
                                        batch_priority.index(item[1])))
    return first, [training_job(peer, batch, settings) for peer, batch in compiled]


def finalize_training_rows(rows, *, peer_order, gflop_per_image, matmul_tflops):
    """Sort rows, add model-FLOP utilization and fastp2p's throughput ratio to each peer."""
    order = {name: index for index, name in enumerate(peer_order)}
    rows = sorted(rows, key=lambda row: (order.get(row["peer"], len(order)), row["batch_size"]))
    fastp2p = {row["batch_size"]: row["images_per_s"] for row in rows
               if row["peer"] == "fastp2p" and row["status"] == "ok"}
    for row in rows:
        if row["status"] != "ok":
            row["mfu"] = row["fastp2p_ratio"] = None
            continue
        achieved_tflops = row["images_per_s"] * gflop_per_image / 1e3
        row["model_tflops"] = achieved_tflops
        row["mfu"] = achieved_tflops / matmul_tflops if matmul_tflops else None
        reference = fastp2p.get(row["batch_size"])
        row["fastp2p_ratio"] = reference / row["images_per_s"] if reference else None
    return rows
