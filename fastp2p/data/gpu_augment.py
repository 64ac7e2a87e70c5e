"""Crop, flip and normalize whole uint8 batches of packed pairs on the device.

``PackedDataset.read_batch`` gives uint8 (N, H, 2W, 3) pairs (already resized); this module
draws each pair's crop and flip exactly as the CPU path does (``transforms.draw_params``, the
reference's distribution, from the generator given for that pair) and turns the batch into the
model's A and B in one pass: the Triton kernel ``fastp2p.kernels.augment`` on CUDA (or on CPU
tensors under ``TRITON_INTERPRET=1``), a plain-PyTorch gather otherwise. Given the same
generators, the result equals what the dataset's ``load`` yields item by item.
"""
import os

import torch

from fastp2p.data.transforms import Preprocess, draw_params


def draw_crop_flips(config: Preprocess, height: int, width: int, rngs):
    """int32 (N,) crop_x, crop_y and flip tensors (CPU), one draw per generator in ``rngs``.

    Pass one ``random.Random`` per pair (seeded as the loader seeds items to reproduce its
    crops), or the same generator N times to draw the batch sequentially.
    """
    draws = [draw_params(config, width, height, rng) for rng in rngs]
    as_tensor = lambda values: torch.tensor(values, dtype=torch.int32)   # noqa: E731
    return (as_tensor([p.x for p in draws]), as_tensor([p.y for p in draws]),
            as_tensor([int(config.flip and p.flip) for p in draws]))


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_kernel(device: torch.device) -> bool:
    """Whether the Triton kernel runs for tensors on ``device`` (else the PyTorch gather)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not _interpreting():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def augment_pairs_torch(pairs, crop_x, crop_y, flip, *, crop_size, swap=False,
                        dtype=torch.float32):
    """The same contract as ``fastp2p.kernels.augment.augment_pairs``, in plain PyTorch."""
    count, _, double_width, _ = pairs.shape
    device = pairs.device
    crop_x, crop_y, flip = (t.to(device=device, dtype=torch.int64) for t in (crop_x, crop_y, flip))
    steps = torch.arange(crop_size, device=device)
    rows = crop_y[:, None] + steps                                   # (N, crop)
    cols = crop_x[:, None] + torch.where(flip[:, None] != 0, crop_size - 1 - steps, steps)
    samples = torch.arange(count, device=device)[:, None, None]
    halves = []
    for start in ((double_width // 2, 0) if swap else (0, double_width // 2)):
        crop = pairs[samples, rows[:, :, None], (cols + start)[:, None, :]]   # (N, crop, crop, C)
        scaled = crop.float().div(255).sub(0.5).div(0.5).to(dtype)
        halves.append(scaled.permute(0, 3, 1, 2))        # NCHW view of NHWC memory
    return halves[0], halves[1]


def augment_batch(pairs: torch.Tensor, config: Preprocess, rngs, *, swap: bool = False,
                  dtype: torch.dtype = torch.float32, device=None) -> dict:
    """``{"A", "B"}``: (N, 3, crop, crop) ``dtype`` tensors in [-1, 1] (channels-last memory).

    ``pairs``: uint8 (N, H, 2W, 3) from ``read_batch`` (pinned, for an asynchronous copy);
    ``rngs``: one generator per pair; ``swap``: BtoA; ``device``: where to compute (default:
    where ``pairs`` is).
    """
    if config.mode != "resize_and_crop":
        raise ValueError(f"augment_batch does the crop and flip of --preprocess resize_and_crop "
                         f"on packed pairs, not {config.mode}")
    if config.a_channels != 3 or config.b_channels != 3:
        raise ValueError("augment_batch makes 3-channel A and B; with --input_nc/--output_nc 1 "
                         "use the dataset's own (CPU) items")
    rngs = list(rngs)
    if pairs.dim() != 4 or len(rngs) != pairs.shape[0]:
        raise ValueError(f"need uint8 (N, H, 2W, 3) pairs and one generator per pair, got "
                         f"{tuple(pairs.shape)} pairs and {len(rngs)} generators")
    height, width = pairs.shape[1], pairs.shape[2] // 2
    crop_x, crop_y, flip = draw_crop_flips(config, height, width, rngs)
    device = torch.device(device) if device is not None else pairs.device
    pairs = pairs.to(device, non_blocking=True)
    if use_kernel(device):
        from fastp2p.kernels.augment import augment_pairs
        a, b = augment_pairs(pairs, crop_x, crop_y, flip, crop_size=config.crop_size,
                             swap=swap, dtype=dtype)
    else:
        a, b = augment_pairs_torch(pairs, crop_x, crop_y, flip, crop_size=config.crop_size,
                                   swap=swap, dtype=dtype)
    return {"A": a, "B": b}
