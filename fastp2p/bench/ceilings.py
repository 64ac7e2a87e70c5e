"""The two ceilings every figure is read against, measured on the device of the run.

- copy bandwidth: a large device-to-device copy, counting bytes read plus bytes written;
- matmul rate: a large square matrix product in the dtype the fast path computes in (bf16 on
  CUDA; fp32 on a CPU, where bf16 is not what anyone trains in).
Each is measured once per device and process and cached, so the harness and every micro-
benchmark module (``fastp2p.bench.ceilings.copy_bandwidth_gbps()``) divide by the same number.
"""
import functools

import torch

from fastp2p.bench.timing import benchmark

CUDA_COPY_BYTES = 1 << 30  # 1 GiB: far past the L2, long enough for a steady-state rate
CPU_COPY_BYTES = 1 << 26
CUDA_MATMUL_SIZE = 8192
CPU_MATMUL_SIZE = 1024


def _device_key(device) -> str:
    device = torch.device(device if device is not None else default_device())
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def copy_bandwidth_gbps(device=None, nbytes=None) -> float:
    """Device-to-device copy bandwidth in GB/s (1e9 bytes/s, read + written) on ``device``."""
    return copy_bandwidth(device, nbytes)["gbps"]


def copy_bandwidth(device=None, nbytes=None) -> dict:
    """``{"gbps", "bytes", "median_ms", "p20_ms", "p80_ms"}`` of the copy, measured once."""
    key = _device_key(device)
    if nbytes is None:
        nbytes = CUDA_COPY_BYTES if key.startswith("cuda") else CPU_COPY_BYTES
    return dict(_measure_copy(key, int(nbytes)))


@functools.lru_cache(maxsize=None)
def _measure_copy(device: str, nbytes: int) -> tuple:
    source = torch.randint(-128, 127, (nbytes,), dtype=torch.int8, device=device)
    destination = torch.empty_like(source)
    timing = benchmark(lambda: destination.copy_(source), device=device, warmup_ms=25,
                       rep_ms=200, flush_l2=False)
    moved = 2 * nbytes
    return (("gbps", moved / (timing.median_ms * 1e-3) / 1e9), ("bytes", moved),
            ("median_ms", timing.median_ms), ("p20_ms", timing.p20_ms),
            ("p80_ms", timing.p80_ms))


def matmul_rate(device=None, size=None) -> dict:
    """``{"tflops", "dtype", "size", "median_ms"}`` of a ``size``-cubed matmul, measured once."""
    key = _device_key(device)
    cuda = key.startswith("cuda")
    if size is None:
        size = CUDA_MATMUL_SIZE if cuda else CPU_MATMUL_SIZE
    dtype = torch.bfloat16 if cuda else torch.float32
    return dict(_measure_matmul(key, int(size), dtype))


@functools.lru_cache(maxsize=None)
def _measure_matmul(device: str, size: int, dtype: torch.dtype) -> tuple:
    # Random operands: a product of zeros runs measurably faster on some GPUs (METHOD.md).
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    timing = benchmark(lambda: torch.mm(a, b), device=device, warmup_ms=50, rep_ms=300,
                       flush_l2=False)
    flops = 2 * size ** 3
    return (("tflops", flops / (timing.median_ms * 1e-3) / 1e12),
            ("dtype", str(dtype).removeprefix("torch.")), ("size", size),
            ("median_ms", timing.median_ms))
