"""Timing shared by the kernel micro-benchmarks: medians with p20/p80 and a copy-bandwidth
yardstick measured in the same run, so every GB/s figure comes with its fraction of what a
device-to-device copy reaches on this machine."""
import time

import torch

QUANTILES = (0.5, 0.2, 0.8)


def time_ms(fn, device: torch.device, quick: bool = False):
    """(median, p20, p80) milliseconds of fn(): triton.testing.do_bench on CUDA, a plain
    perf_counter loop on CPU (honestly labelled by the caller)."""
    if device.type == "cuda":
        import triton.testing
        return tuple(triton.testing.do_bench(fn, quantiles=list(QUANTILES),
                                             warmup=25 if quick else 100,
                                             rep=50 if quick else 200))
    fn()
    samples = []
    for _ in range(5 if quick else 20):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    samples = torch.tensor(samples)
    return tuple(torch.quantile(samples, q).item() for q in QUANTILES)


def copy_bandwidth_gbps(device: torch.device, quick: bool = False) -> float:
    """Device-to-device copy rate (read + write bytes per second) on a tensor well past the
    caches: the ceiling a memory-bound kernel can approach."""
    numel = (2 ** 22 if quick else 2 ** 28) // 2  # bf16 elements: 4 MiB quick, 256 MiB full
    src = torch.randn(numel, device=device).to(torch.bfloat16)
    dst = torch.empty_like(src)
    median_ms = time_ms(lambda: dst.copy_(src), device, quick)[0]
    return 2 * src.numel() * src.element_size() / (median_ms * 1e-3) / 1e9


def row(op, shape, dtype, provider, timing_ms, moved_bytes, copy_gbps, **extra) -> dict:
    median, p20, p80 = timing_ms
    gbps = moved_bytes / (median * 1e-3) / 1e9
    return dict(op=op, shape=list(shape), dtype=str(dtype).replace("torch.", ""),
                provider=provider, median_ms=median, p20_ms=p20, p80_ms=p80, gbps=gbps,
                copy_gbps=copy_gbps, fraction_of_copy=gbps / copy_gbps, **extra)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
