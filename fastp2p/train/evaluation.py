"""How far ``fastp2p test``'s translations are from the truth, next to what needs no model.

A translation is only worth looking at if it beats the answers that need no training: the
constant baseline (the train split's mean image, the same output for every input) and, when A
and B have the same channels, the identity baseline (returning the input as it is). The scores
are mean absolute differences to real_B in the images' [-1, 1] units, as the L1 term of the
generator loss measures them (before its lambda factor).
"""
import math

import torch

# The constant baseline averages at most this many train images, evenly spaced in the split:
# enough for a stable mean, bounded time on a large dataset.
MEAN_IMAGE_PAIRS = 500


def train_mean_image(args, shape: torch.Size):
    """(mean real_B of the train split loaded as the test split is, what it averages), or
    (None, why not) when there is no train split, one of the images it averages cannot be
    loaded (a truncated file: only this optional baseline needs the train split, so the test
    goes on without it), or its images are not all of ``shape``."""
    from fastp2p.data import DataError, create_dataset
    from fastp2p.data.loader import item_rng

    try:
        dataset = create_dataset(args, "train")
    except DataError as err:
        return None, f"no train split to average ({err})"
    count = min(len(dataset), MEAN_IMAGE_PAIRS)
    total = torch.zeros(shape, dtype=torch.float64)
    for i in range(count):
        index = i * len(dataset) // count
        try:    # its crop (with --load_size > --crop_size) drawn as the loader draws epoch 0's
            image = dataset.load(index, item_rng(args.seed, 0, index))["B"]
        except DataError as err:
            return None, f"a train image cannot be loaded ({err})"
        if image.shape != shape:
            return None, (f"train images are {tuple(image.shape)}, test images "
                          f"{tuple(shape)}: no common mean image")
        total += image
    return (total / count).float(), f"the mean of {count} train images"


class L1Scores:
    """Mean |fake_B - real_B| over the translated images, and the same for the baselines.

    ``mean_image``: the constant baseline's image (C x H x W), or None; ``mean_note``: what it
    averages, or why there is none (from ``train_mean_image``).
    """

    def __init__(self, same_channels: bool, mean_image=None, mean_note: str = ""):
        self.same_channels = same_channels
        self.mean_image, self.mean_note = mean_image, mean_note
        self.images = 0
        self.sums = {"model": 0.0, "constant": 0.0, "identity": 0.0}

    def add(self, real_A: torch.Tensor, fake_B: torch.Tensor, real_B: torch.Tensor) -> None:
        """Score one translated image (1 x C x H x W tensors on any device)."""
        real_B = real_B.float().cpu()
        self.sums["model"] += (fake_B.float().cpu() - real_B).abs().mean().item()
        if self.same_channels:
            self.sums["identity"] += (real_A.float().cpu() - real_B).abs().mean().item()
        if self.mean_image is not None:
            self.sums["constant"] += (self.mean_image - real_B[0]).abs().mean().item()
        self.images += 1

    def mean(self, name: str) -> float:
        return self.sums[name] / self.images if self.images else math.nan

    def report(self) -> str:
        """Lines for the console: the model's L1, and each baseline's with the model's ratio."""
        model = self.mean("model")
        lines = [f"L1 to real_B over {self.images} image(s), in [-1, 1] units (lower is better):",
                 f"  model (fake_B)        {model:.4f}"]
        if self.mean_image is not None:
            constant = self.mean("constant")
            lines.append(f"  constant baseline     {constant:.4f}  (model / constant "
                         f"{_ratio(model, constant)}; {self.mean_note})")
        else:
            lines.append(f"  constant baseline     not computed: {self.mean_note}")
        if self.same_channels:
            identity = self.mean("identity")
            lines.append(f"  identity baseline     {identity:.4f}  (model / identity "
                         f"{_ratio(model, identity)}; fake_B = real_A)")
        return "\n".join(lines)

    def record(self) -> dict:
        """What ``report`` prints, for scores.json (``fastp2p.train.score_file``): each L1
        (None for a baseline not computed) and what the constant baseline averages, or why
        there is none."""
        l1 = {"model": self.mean("model"),
              "constant": self.mean("constant") if self.mean_image is not None else None,
              "identity": self.mean("identity") if self.same_channels else None}
        return {"l1": l1, "constant_note": self.mean_note}


def _ratio(model: float, baseline: float) -> str:
    """model / baseline to 2 decimals; "n/a" when the baseline is exact (L1 0: real_B equals
    real_A, or every real_B is the mean image), where no ratio means anything."""
    return f"{model / baseline:.2f}" if baseline else "n/a"

