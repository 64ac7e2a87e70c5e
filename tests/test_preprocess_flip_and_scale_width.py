"""Two preprocessing choices that the other data tests leave open:

- --no_flip reaches the packed (device) augmenter: ``augment_batch`` and ``draw_crop_flips``
  never mirror a pair when the config says no flip, even for draws whose flip coin came up;
- --preprocess scale_width_and_crop on an image already --load_size wide but shorter than
  --crop_size still resizes it (to crop_size high), as the reference's ``__scale_width`` does,
  before the crop.
"""
import random

import numpy as np
import torch
from PIL import Image

from fastp2p.data.gpu_augment import augment_batch, draw_crop_flips
from fastp2p.data.transforms import (Preprocess, crop_flip_uint8, draw_params, to_normalized_tensor,
                                     transform_image)

COUNT, HEIGHT, WIDTH = 6, 8, 8


def _pairs():
    generator = torch.Generator().manual_seed(11)
    return torch.randint(0, 256, (COUNT, HEIGHT, 2 * WIDTH, 3), dtype=torch.uint8,
                         generator=generator)


def _rngs():
    return [random.Random(seed) for seed in range(COUNT)]


def test_no_flip_draws_no_flips_even_where_the_coin_says_flip():
    config = Preprocess(load_size=WIDTH, crop_size=6, flip=False)
    coins = [draw_params(config, WIDTH, HEIGHT, rng).flip for rng in _rngs()]
    assert any(coins)   # otherwise this test could not tell a flip from none
    _, _, flips = draw_crop_flips(config, HEIGHT, WIDTH, _rngs())
    assert flips.tolist() == [0] * COUNT


def test_no_flip_batch_equals_the_unflipped_cpu_items():
    """augment_batch with flip=False equals crop_flip_uint8 (the dataset's own path) item by
    item, with the same draws: no half of any pair mirrored."""
    config = Preprocess(load_size=WIDTH, crop_size=6, flip=False)
    pairs = _pairs()
    out = augment_batch(pairs, config, _rngs())
    for i, rng in enumerate(_rngs()):
        params = draw_params(config, WIDTH, HEIGHT, rng)
        for side, name in enumerate("AB"):
            half = pairs[i, :, side * WIDTH:(side + 1) * WIDTH].numpy()
            assert torch.equal(out[name][i], crop_flip_uint8(half, config, params)), (i, name)


def test_scale_width_resizes_an_image_of_the_target_width_shorter_than_the_crop():
    """An 8x4 half at --load_size 8, --crop_size 6: the reference resizes it to 8x6 (bicubic)
    and then crops 6x6; kept as it is, the crop would run past its bottom edge."""
    config = Preprocess(mode="scale_width_and_crop", load_size=8, crop_size=6, flip=False)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    for seed in range(3):
        params = draw_params(config, 8, 4, random.Random(seed))
        got = transform_image(image, config, params, 3)
        resized = image.resize((8, 6), Image.Resampling.BICUBIC)
        expected = resized.crop((params.x, params.y, params.x + 6, params.y + 6))
        assert got.shape == (3, 6, 6)
        assert torch.equal(got, to_normalized_tensor(np.asarray(expected)))
