"""The reference implementation's preprocessing (its ``get_params`` / ``get_transform``), on PIL
images for folders and on uint8 arrays for packed shards, with the same random draws.

Per pair: ``draw_params`` picks one crop offset and one flip for A and B together, exactly as
the reference draws them (``randint(0, max(0, w - crop))`` for x, then y, then
``random() > 0.5`` for the flip), from whatever ``random.Random``-like generator it is given.
Values end as ``(v / 255 - 0.5) / 0.5`` in float32, the reference's ToTensor + Normalize.

torch is imported by the functions that make tensors, not here: `fastp2p pack` takes this
module's sizes and resize without them, and torch's import is seconds.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from fastp2p.data.errors import DataError
from fastp2p.data.options import PREPROCESS_MODES, crop_size_problem

if TYPE_CHECKING:
    import torch

BICUBIC = Image.Resampling.BICUBIC


@dataclass(frozen=True)
class Preprocess:
    """What happens to each pair at load time; A and B here are already the model's A and B."""
    mode: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    a_channels: int = 3
    b_channels: int = 3

    def __post_init__(self):
        if self.mode not in PREPROCESS_MODES:
            raise DataError(f"--preprocess {self.mode!r} is not one of "
                            f"{', '.join(PREPROCESS_MODES)}")
        if self.load_size < 1 or self.crop_size < 1:
            raise DataError(f"--load_size ({self.load_size}) and --crop_size ({self.crop_size}) "
                            "must be positive")
        problem = crop_size_problem(self.mode, self.load_size, self.crop_size)
        if problem:
            raise DataError(problem)
        for name, channels in (("A", self.a_channels), ("B", self.b_channels)):
            if channels not in (1, 3):
                raise DataError(f"{name} must have 1 or 3 channels, got {channels}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Preprocess":
        return cls(mode=args.preprocess, load_size=args.load_size, crop_size=args.crop_size,
                   flip=not args.no_flip, a_channels=args.input_nc, b_channels=args.output_nc)

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) of a half after the resize step (before cropping), as get_params sees it."""
        if self.mode == "resize_and_crop":
            return self.load_size, self.load_size
        if self.mode == "scale_width_and_crop":
            return self.load_size, self.load_size * height // width
        return width, height


@dataclass(frozen=True)
class PairParams:
    x: int
    y: int
    flip: bool


def draw_params(config: Preprocess, width: int, height: int, rng) -> PairParams:
    """The reference's get_params for a half of size (width, height): x, then y, then flip."""
    new_w, new_h = config.scaled_size(width, height)
    x = rng.randint(0, max(0, new_w - config.crop_size))
    y = rng.randint(0, max(0, new_h - config.crop_size))
    flip = rng.random() > 0.5
    return PairParams(x, y, flip)


def scaled_width_size(width: int, height: int, target: int, crop: int) -> tuple[int, int]:
    """(w, h) the reference's __scale_width gives: width ``target``, the aspect kept, the
    height at least ``crop``."""
    if width == target and height >= crop:
        return width, height
    return target, int(max(target * height / width, crop))


def multiple_of_4_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) the reference's __make_power_2(img, base=4) gives: each side rounded (Python's
    round, as there) to the nearest multiple of 4."""
    return int(round(width / 4) * 4), int(round(height / 4) * 4)


def _scale_width(img: Image.Image, target: int, crop: int) -> Image.Image:
    size = scaled_width_size(*img.size, target, crop)
    return img if size == img.size else img.resize(size, BICUBIC)


def _make_multiple_of_4(img: Image.Image) -> Image.Image:
    size = multiple_of_4_size(*img.size)
    return img if size == img.size else img.resize(size, BICUBIC)


def to_normalized_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC -> float32 CxHxW in [-1, 1], with the reference's exact float ops."""
    import torch
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    # writable and contiguous (np.asarray of a PIL image is read-only); copies only if needed.
    # A flipped 1-pixel-wide crop has a negative stride that numpy still calls contiguous (its
    # axis has length 1), so np.require keeps it, but torch.from_numpy refuses it: copy that too.
    if min(pixels.strides) < 0:
        pixels = pixels.copy()
    tensor = torch.from_numpy(np.require(pixels, requirements=["C", "W"]))
    tensor = tensor.permute(2, 0, 1).contiguous()
    return tensor.float().div(255).sub(0.5).div(0.5)


def transform_image(img: Image.Image, config: Preprocess, params: PairParams,
                    channels: int) -> torch.Tensor:
    """One half through the reference's get_transform(opt, params, grayscale=channels == 1)."""
    if channels == 1:
        img = img.convert("L")
    if "resize" in config.mode:
        img = img.resize((config.load_size, config.load_size), BICUBIC)
    elif "scale_width" in config.mode:
        img = _scale_width(img, config.load_size, config.crop_size)
    if "crop" in config.mode:
        width, height = img.size
        size = config.crop_size
        if width > size or height > size:
            img = img.crop((params.x, params.y, params.x + size, params.y + size))
    if config.mode == "none":
        img = _make_multiple_of_4(img)
    if config.flip and params.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_normalized_tensor(np.asarray(img))


def resize_uint8(half: np.ndarray, size: int) -> np.ndarray:
    """A uint8 HxWx3 (or HxW) half resized to size x size, as the folders' resize does it."""
    return np.asarray(Image.fromarray(half).resize((size, size), BICUBIC))


def crop_flip_uint8(half: np.ndarray, config: Preprocess, params: PairParams) -> torch.Tensor:
    """A stored (already resized) uint8 HxWx3 half, or HxW grayscale half of a --gray pack,
    -> normalized CxHxW tensor.

    Packed shards hold halves already resized to load_size (grayscale ones converted before
    that resize, as the folder path does it), so only the crop, flip and normalization remain.
    """
    size = config.crop_size
    height, width = half.shape[:2]
    if width > size or height > size:
        half = half[params.y:params.y + size, params.x:params.x + size]
    if config.flip and params.flip:
        half = half[:, ::-1]
    return to_normalized_tensor(half)
