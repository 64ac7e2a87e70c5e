"""Crop, flip and normalize whole uint8 batches of packed pairs on the device.

``PackedDataset.read_batch`` gives uint8 (N, H, 2W, 3) pairs (already resized); this module
draws each pair's crop and flip exactly as the CPU path does (``transforms.draw_params``, the
reference's distribution, from the generator given for that pair) and turns the batch into the
model's A and B in one pass: the op ``fastp2p.ops.augment.augment_pairs`` (the Triton kernel on
CUDA, or on CPU tensors under ``TRITON_INTERPRET=1``; a plain-PyTorch gather otherwise: the
backend choice is the ops layer's). Given the same generators, the result equals what the
dataset's ``load`` yields item by item.
"""
import torch

from fastp2p.data.transforms import Preprocess, draw_params
from fastp2p.ops.augment import augment_pairs
from fastp2p.ops.backends import reference


def draw_crop_flips(config: Preprocess, height: int, width: int, rngs):
    """int32 (N,) crop_x, crop_y and flip tensors (CPU), one draw per generator in ``rngs``.

    Pass one ``random.Random`` per pair (seeded as the loader seeds items to reproduce its
    crops), or the same generator N times to draw the batch sequentially.
    """
    draws = [draw_params(config, width, height, rng) for rng in rngs]
    as_tensor = lambda values: torch.tensor(values, dtype=torch.int32)   # noqa: E731
    return (as_tensor([p.x for p in draws]), as_tensor([p.y for p in draws]),
            as_tensor([int(config.flip and p.flip) for p in draws]))


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
    """``check_crops_fit``, then the op's plain-PyTorch launcher (the reference backend's
    ``augment_pairs``) on any device: the CPU path's exact float values, whatever backend the
    op would pick (what benchmarks/bench_data.py times against the kernel)."""
    check_crops_fit(pairs.shape[1], pairs.shape[2] // 2, crop_x, crop_y, crop_size)
    return reference.augment_pairs(pairs, crop_x, crop_y, flip, crop_size=crop_size, swap=swap,
                                   dtype=dtype)


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
    a, b = augment_pairs(pairs, crop_x, crop_y, flip, crop_size=config.crop_size, swap=swap,
                         dtype=dtype)
    return {"A": a, "B": b}
