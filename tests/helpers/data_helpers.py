"""Small real image datasets for the data tests, written with Pillow into a tmp folder.

Halves carry a coordinate gradient (red = STEP * x, green = STEP * y) so a test can read back
the crop offset and flip of every output, and a per-side blue value so a swapped or mismatched
A/B shows. ``expected_tensor`` is the reference's ToTensor + Normalize written out independently.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastp2p.data import add_data_arguments

STEP = 10           # red/green grow by this per pixel (exact up to 25 pixels, then wrapping)
A_BLUE, B_BLUE = 0, 255


def gradient_half(width: int, height: int, blue: int) -> np.ndarray:
    """uint8 HxWx3: red = STEP * x, green = STEP * y, blue constant."""
    ys, xs = np.mgrid[0:height, 0:width]
    half = np.empty((height, width, 3), np.uint8)
    half[..., 0] = (xs * STEP) % 256     # wider halves wrap around
    half[..., 1] = (ys * STEP) % 256
    half[..., 2] = blue
    return half


def write_image(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_ab(path: Path, width: int, height: int, a_blue: int = A_BLUE,
             b_blue: int = B_BLUE) -> Path:
    """An aligned A|B image, each half ``width`` x ``height``."""
    pair = np.concatenate([gradient_half(width, height, a_blue),
                           gradient_half(width, height, b_blue)], axis=1)
    return write_image(path, pair)


def make_aligned(root: Path, count: int = 3, width: int = 20, height: int = 20,
                 phase: str = "train") -> list[Path]:
    """``count`` A|B PNGs in ``root/phase``; blue of A is 10 * i so items are told apart."""
    return [write_ab(root / phase / f"pair{i:02d}.png", width, height, a_blue=10 * i)
            for i in range(count)]


def tiny_pack_args(data, out, *options: str) -> list[str]:
    """A `fastp2p pack DATA OUT` command line for tiny images: one worker, no progress bars."""
    return ["pack", str(data), str(out), "--load_size", "16", "--workers", "1", "--no-progress",
            *options]


def data_args(dataroot, *options: str) -> argparse.Namespace:
    """The data options as the CLI parses them."""
    parser = add_data_arguments(argparse.ArgumentParser())
    argv = ["--dataroot", str(dataroot)] if dataroot is not None else []
    return parser.parse_args(argv + list(options))


def expected_tensor(img: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor then Normalize(0.5, 0.5) of a PIL image, written out."""
    pixels = np.array(img)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
    return (tensor - 0.5) / 0.5


def to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """A normalized CxHxW tensor back to uint8-valued HxWxC integers."""
    return torch.round((tensor * 0.5 + 0.5) * 255).to(torch.int64).permute(1, 2, 0).numpy()


def dead_pid() -> int:
    """The pid of a process that has exited (a killed run's temporary files name one)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def synthetic_pack(tmp_path: Path, pairs: int) -> tuple:
    """(DATAROOT, OUT) of a finished `fastp2p pack --synthetic` of ``pairs`` pairs at load
    size 20, two pairs per shard."""
    from fastp2p.cli import main
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", str(pairs), str(data), str(out), "--load_size", "20",
                 "--pairs-per-shard", "2", "--no-progress"]) == 0
    return data, out
