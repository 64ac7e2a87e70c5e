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
    if device.type not in ("cuda", "cpu") or (device.type == "cpu" and not _interpreting()):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _scale_into(pixels: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """uint8 ``pixels`` as the CPU path's ToTensor + Normalize make them, (x / 255 - 0.5) / 0.5,
    computed as x / 127.5 - 1: the same float32 values (each step is the other's scaled by a
    power of two, which commutes with rounding), in two passes instead of four."""
    torch.div(pixels, 127.5, out=out)
    return out.sub_(1)


def check_crops_fit(height: int, width: int, crop_x, crop_y, crop_size: int, *,
                    phase_dir=None, index=None) -> None:
    """ValueError unless every crop (``crop_x``/``crop_y``: int tensors of left/top corners)
    lies inside the stored halves of ``height`` x ``width``: a crop reaching past them would
    leave part of the batch as whatever memory held before (or read another pair's pixels).
    ``phase_dir`` and ``index``: the pack the pairs were read from, which the message names
    with the `fastp2p pack` command that repacks it large enough."""
    if crop_size > min(height, width):
        if phase_dir is None:
            where, repack = "", f"repack the pairs with --load_size >= {crop_size}"
        else:
            from fastp2p.data.packed_index import repack_command_line
            command = repack_command_line(phase_dir, index, crop_size)
            where, repack = f"{phase_dir}: ", f"repack at that size: `{command}`"
        raise ValueError(f"{where}--crop_size {crop_size} is larger than the stored pairs' "
                         f"halves ({height}x{width}): pass a --crop_size <= "
                         f"{min(height, width)}, or {repack}")
    if len(crop_x) and (int(crop_x.min()) < 0 or int(crop_y.min()) < 0
                        or int(crop_x.max()) > width - crop_size
                        or int(crop_y.max()) > height - crop_size):
        raise ValueError(f"crop corners must lie in [0, {width - crop_size}] x "
                         f"[0, {height - crop_size}] for {crop_size}x{crop_size} crops of "
                         f"{height}x{width} halves")


def augment_pairs_torch(pairs, crop_x, crop_y, flip, *, crop_size, swap=False,
                        dtype=torch.float32):
    """The same contract as ``fastp2p.kernels.augment.augment_pairs``, in plain PyTorch, with
    the CPU path's exact float values. On the CPU each crop is scaled as it is cut (it is still
    in cache); elsewhere the crops are gathered into one uint8 batch and scaled in one pass."""
    count, height, double_width, channels = pairs.shape
    width = double_width // 2
    check_crops_fit(height, width, crop_x, crop_y, crop_size)
    on_cpu = pairs.device.type == "cpu"
    scaled = torch.empty((2, count, crop_size, crop_size, channels), dtype=torch.float32,
                         device=pairs.device)
    crops = scaled if on_cpu else torch.empty(scaled.shape, dtype=torch.uint8,
                                              device=pairs.device)
    starts = (width, 0) if swap else (0, width)
    for n, (x, y, mirrored) in enumerate(zip(crop_x.tolist(), crop_y.tolist(), flip.tolist())):
        for side, start in enumerate(starts):
            crop = pairs[n, y:y + crop_size, start + x:start + x + crop_size]
            crop = crop.flip(1) if mirrored else crop
            if on_cpu:
                _scale_into(crop, scaled[side, n])
            else:
                crops[side, n] = crop
    if not on_cpu:
        _scale_into(crops, scaled)
    a, b = scaled.to(dtype).permute(0, 1, 4, 2, 3)      # NCHW views of NHWC memory
    return a, b


def augment_batch(pairs: torch.Tensor, config: Preprocess, rngs, *, swap: bool = False,
                  dtype: torch.dtype = torch.float32, device=None, phase_dir=None,
                  index=None) -> dict:
    """``{"A", "B"}``: (N, 3, crop, crop) ``dtype`` tensors in [-1, 1] (channels-last memory).

    ``pairs``: uint8 (N, H, 2W, 3) from ``read_batch`` (pinned, for an asynchronous copy);
    ``rngs``: one generator per pair; ``swap``: BtoA; ``device``: where to compute (default:
    where ``pairs`` is); ``phase_dir``, ``index``: the pack they were read from, for the
    message of crops larger than the pairs (``check_crops_fit``).
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
    check_crops_fit(height, width, crop_x, crop_y, config.crop_size,   # before either path
                    phase_dir=phase_dir, index=index)
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
