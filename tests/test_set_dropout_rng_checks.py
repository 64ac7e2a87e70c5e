"""set_dropout_rng takes ints in the ranges the counter-based RNG uses and refuses anything
else in one line naming the range (QA r40 N3: floats were truncated, negative values taken and
2**70 raised torch's bare "Overflow when unpacking long long")."""
import re

import numpy as np
import pytest
import torch

import fastp2p


@pytest.fixture(scope="module")
def unet():
    return fastp2p.UNet(3, 3, 5, ngf=4, use_dropout=True)


@pytest.mark.parametrize("seed, offset, message", [
    (1.5, 2, "seed must be an int in [0, 2**64) (the kernels use its low 32 bits), got 1.5"),
    (1, 2.7, "offset must be an int in [0, 2**63) (an int64 count of the elements drawn), "
             "got 2.7"),
    (-1, 0, "seed must be an int in [0, 2**64)"), (1, -5, "offset must be an int in [0, 2**63)"),
    (2 ** 70, 0, "got 1180591620717411303424"), (0, 2 ** 63, "offset must be an int in"),
    (True, 0, "seed must be an int in"), (1, np.True_, "offset must be an int in"),
    ("7", 0, "got '7'"), (1, torch.tensor(2.0), "offset must be an int in")])
def test_refused(unet, seed, offset, message):
    before = unet.dropout_rng.clone()
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        unet.set_dropout_rng(seed, offset)
    assert "\n" not in str(raised.value)
    assert torch.equal(unet.dropout_rng, before)


@pytest.mark.parametrize("seed, offset, stored", [
    (5, 123, [5, 123]), (0, 0, [0, 0]), (np.int64(7), torch.tensor(9), [7, 9]),
    (2 ** 64 - 1, 2 ** 63 - 1, [2 ** 32 - 1, 2 ** 63 - 1]),   # torch.manual_seed's largest seed
    (2 ** 32 + 3, 2 ** 40, [3, 2 ** 40])])
def test_taken(unet, seed, offset, stored):
    unet.set_dropout_rng(seed, offset)
    assert unet.dropout_rng.tolist() == stored


def test_a_seed_and_its_low_32_bits_draw_the_same_masks():
    unet = fastp2p.UNet(3, 3, 6, ngf=4, use_dropout=True).train()  # 6 levels: one Dropout
    x = torch.randn(1, 3, 64, 64)
    outputs = []
    for seed in (2 ** 40 + 11, 11, 12):
        unet.set_dropout_rng(seed, 0)
        with torch.no_grad():
            outputs.append(unet(x))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[1], outputs[2])
