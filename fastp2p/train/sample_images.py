"""Sample images as PNG files: one C x H x W tensor in [-1, 1] written as the reference's
``tensor2im`` does it (x in [-1, 1] -> (x + 1) / 2 * 255, truncated to uint8; one channel
repeated to three), replaced atomically (``report_files``)."""
import re
from pathlib import Path

import numpy as np
import torch

from fastp2p.train.image_sizes import aspect_ratio_size
from fastp2p.train.report_files import replace_atomically

# the three images of a sample (input, output, target), as its files and the pages name them
TRIPLET = ("real_A", "fake_B", "real_B")
# a sample image's file name as the training page writes it: epoch, step, label
SAMPLE_NAME = re.compile(rf"^epoch(\d+)_step(\d+)_({'|'.join(TRIPLET)})\.png$")


def tensor_to_image(image: torch.Tensor) -> np.ndarray:
    """One C x H x W tensor in [-1, 1] -> H x W x 3 uint8, exactly as the reference."""
    array = image.detach().float().cpu().numpy()
    if array.shape[0] == 1:
        array = np.tile(array, (3, 1, 1))
    return ((np.transpose(array, (1, 2, 0)) + 1) / 2.0 * 255.0).astype(np.uint8)


def save_image(image: torch.Tensor, path: Path, aspect_ratio: float = 1.0) -> None:
    """``image`` (C x H x W in [-1, 1]) as a PNG; with ``aspect_ratio`` other than 1, resized
    as the reference's util.save_image does it (bicubic): above 1 to width H and height
    int(W * aspect_ratio), below 1 to width int(H / aspect_ratio) and height W (its sizes as
    written, so a square image gets taller with aspect_ratio > 1)."""
    from PIL import Image

    size = aspect_ratio_size(image.shape[-1], image.shape[-2], aspect_ratio)

    def write(file) -> None:
        picture = Image.fromarray(tensor_to_image(image))
        if picture.size != size:
            picture = picture.resize(size, Image.BICUBIC)
        picture.save(file, format="PNG")

    replace_atomically(Path(path), write)
