"""The pair augmentation op: a uint8 batch of stored A|B pairs -> the model's A and B.

Checks the arguments once, then runs the backend's ``augment_pairs`` launcher
(fastp2p.ops.backends): Triton's fused kernel (kernels/augment.py) on CUDA, or on CPU tensors
under TRITON_INTERPRET=1; elsewhere the reference's plain-PyTorch gather, its ordinary path
there (contract.REFERENCE_ELSEWHERE). ``fastp2p.data.gpu_augment`` draws the crops and calls it.
"""
import torch

from fastp2p.ops.backends import backend_for

# Output dtypes (the math is float32; the store casts).
OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def augment_pairs(pairs, crop_x, crop_y, flip, *, crop_size, swap=False, dtype=torch.float32,
                  out_a=None, out_b=None):
    """(A, B), each (N, C, crop_size, crop_size) ``dtype`` in [-1, 1], from uint8 ``pairs``
    (N, H, 2W, C) with 1-4 channels: per pair, the crop_size square at (crop_x, crop_y) of each
    half, mirrored left-right where ``flip``, scaled as ``(v / 255 - 0.5) / 0.5``; ``swap``
    (BtoA) feeds the right half to A. ``crop_x``, ``crop_y``, ``flip``: int32 (N,); on the CPU
    they are range-checked (and moved to the pairs' device), on the device trusted (no sync).
    Outputs are new channels-last tensors unless ``out_a`` / ``out_b`` are given (any strides).

    >>> pairs = torch.zeros(2, 6, 12, 3, dtype=torch.uint8)
    >>> zeros = torch.zeros(2, dtype=torch.int32)
    >>> a, b = augment_pairs(pairs, zeros, zeros, zeros, crop_size=4)   # (2, 3, 4, 4) each
    """
    if pairs.dtype != torch.uint8 or pairs.dim() != 4:
        raise ValueError(f"pairs must be uint8 (N, H, 2W, C), got {pairs.dtype} "
                         f"{tuple(pairs.shape)}")
    count, height, double_width, channels = pairs.shape
    if double_width % 2 or not 1 <= channels <= 4:
        raise ValueError(f"pairs must be (N, H, 2W, C) with an even width and 1-4 channels, got "
                         f"{tuple(pairs.shape)}")
    width = double_width // 2
    if not 1 <= crop_size <= min(height, width):
        raise ValueError(f"crop_size must be in [1, {min(height, width)}] for pairs of "
                         f"{height}x{width} halves, got {crop_size}")
    if dtype not in OUT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(str, OUT_DTYPES))}, got {dtype}")
    crop_x = _checked_offsets("crop_x", crop_x, count, width - crop_size, pairs.device)
    crop_y = _checked_offsets("crop_y", crop_y, count, height - crop_size, pairs.device)
    flip = _checked_offsets("flip", flip, count, 1, pairs.device)
    shape = (count, channels, crop_size, crop_size)
    for name, out in (("out_a", out_a), ("out_b", out_b)):
        if out is not None and (tuple(out.shape) != shape or out.dtype != dtype
                                or out.device != pairs.device):
            raise ValueError(f"{name} must be {dtype} {shape} on {pairs.device}, got "
                             f"{out.dtype} {tuple(out.shape)} on {out.device}")
    return backend_for(pairs.device, dtype).augment_pairs(
        pairs, crop_x, crop_y, flip, crop_size=crop_size, swap=swap, dtype=dtype, out_a=out_a,
        out_b=out_b)


def _checked_offsets(name, offsets, count, high, device):
    """``offsets`` on ``device`` once checked: int32 (count,), in [0, high] where that costs no
    device sync (CPU tensors; device tensors are the caller's promise)."""
    if offsets.dtype != torch.int32 or offsets.shape != (count,):
        raise ValueError(f"{name} must be int32 of shape ({count},), got {offsets.dtype} "
                         f"{tuple(offsets.shape)}")
    if offsets.device.type == "cpu":
        if count and (int(offsets.min()) < 0 or int(offsets.max()) > high):
            raise ValueError(f"{name} must lie in [0, {high}] (stored size minus crop size), got "
                             f"values in [{int(offsets.min())}, {int(offsets.max())}]")
        return offsets.to(device, non_blocking=True)
    if offsets.device != device:
        raise ValueError(f"{name} is on {offsets.device} but the pairs are on {device}")
    return offsets


def augment_runs_a_kernel(device) -> bool:
    """Whether ``augment_pairs`` runs a kernel for tensors on ``device`` (else the reference's
    PyTorch gather, which a CPU loader runs in its reader threads)."""
    backend = backend_for(torch.device(device), torch.float32)
    # The reference backend's own launcher is that gather; other backends' are kernels.
    return backend.NAME != "reference" and backend.provides("augment_pairs")
