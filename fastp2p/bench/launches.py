"""GPU work items per training step: a figure to drive down (issue 17), as images/s is one to
drive up. At batch 1 the step is latency-bound, so every kernel costs a few microseconds
whatever its size; the count shows how many are left.

Counted with the PyTorch profiler (CUPTI), which sees the kernels of a CUDA-graph replay as
well as eager launches. On a CPU there is nothing to count and the figures are None.
"""
import torch
from torch.profiler import ProfilerActivity, profile

MEMORY_OPERATIONS = ("Memcpy", "Memset")  # how CUPTI names copies and fills (not kernels)


def count_device_work(events) -> dict:
    """{"kernels": n, "memory_ops": m} over profiler events: device-side events, split into
    kernels and copies / fills. Host-side events (operators, runtime calls) are not counted."""
    kernels = memory_ops = 0
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if event.name.startswith(MEMORY_OPERATIONS):
            memory_ops += 1
        else:
            kernels += 1
    return {"kernels": kernels, "memory_ops": memory_ops}


def device_work_per_step(step, device, steps: int = 3) -> dict:
    """{"kernels_per_step": ..., "memory_ops_per_step": ...} of ``step()`` (already warmed up)
    over ``steps`` profiled calls; both None off CUDA."""
    if torch.device(device).type != "cuda":
        return {"kernels_per_step": None, "memory_ops_per_step": None}
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize(device)
    counts = count_device_work(prof.events())
    return {"kernels_per_step": counts["kernels"] / steps,
            "memory_ops_per_step": counts["memory_ops"] / steps}
