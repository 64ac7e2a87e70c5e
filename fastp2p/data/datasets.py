"""Map-style datasets of image pairs; items are the reference AlignedDataset's dicts (and
of single images without a target, the reference SingleDataset's: ``{"A", "A_paths"}``).

``dataset[i]`` draws its crop and flip from Python's global ``random`` (as the reference does);
``dataset.load(i, rng)`` draws them from ``rng``, which is what ``create_dataloader`` uses to make
the augmentation depend only on (seed, epoch, index), not on worker count or timing.
"""
import random
from pathlib import Path

import torch
from PIL import Image

from fastp2p.data.folders import open_pair, open_rgb
from fastp2p.data.transforms import Preprocess, draw_params, transform_image


class PairDataset(torch.utils.data.Dataset):
    """Shared item logic: read the two halves, swap for BtoA, same params for both."""

    def __init__(self, config: Preprocess, swap: bool):
        self.config = config
        self.swap = swap

    def read_halves(self, index: int) -> tuple[Image.Image, Image.Image, str, str]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        return self.load(index, random)

    def load(self, index: int, rng) -> dict:
        a_img, b_img, a_path, b_path = self.read_halves(index)
        # from the left half's size whatever the direction, as the reference draws them: the
        # halves of an A|B image of odd width differ by a pixel
        params = draw_params(self.config, *a_img.size, rng)
        if self.swap:
            a_img, b_img, a_path, b_path = b_img, a_img, b_path, a_path
        return {"A": transform_image(a_img, self.config, params, self.config.a_channels),
                "B": transform_image(b_img, self.config, params, self.config.b_channels),
                "A_paths": a_path, "B_paths": b_path}


class AlignedDataset(PairDataset):
    """A|B images side by side, split at w/2 (the reference's AlignedDataset)."""

    def __init__(self, paths: list[Path], config: Preprocess, swap: bool):
        super().__init__(config, swap)
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def read_halves(self, index):
        path = self.paths[index]
        return *open_pair(Path(path), Path(path), aligned=True), path, path


class TwoFoldersDataset(PairDataset):
    """PHASE/A/x and PHASE/B/x, paired by name."""

    def __init__(self, pairs: list[tuple[Path, Path]], config: Preprocess, swap: bool):
        super().__init__(config, swap)
        self.pairs = [(str(a), str(b)) for a, b in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def read_halves(self, index):
        a_path, b_path = self.pairs[index]
        return *open_pair(Path(a_path), Path(b_path), aligned=False), a_path, b_path


class SingleDataset(torch.utils.data.Dataset):
    """Images without a target, each one A (the reference's SingleDataset, which fastp2p test
    translates with --dataset_mode single): no B, so nothing to swap for --direction."""

    def __init__(self, paths: list[Path], config: Preprocess):
        self.config = config
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return self.load(index, random)

    def load(self, index: int, rng) -> dict:
        path = self.paths[index]
        image = open_rgb(Path(path))
        params = draw_params(self.config, *image.size, rng)
        return {"A": transform_image(image, self.config, params, self.config.a_channels),
                "A_paths": path}
