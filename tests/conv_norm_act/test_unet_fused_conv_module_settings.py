"""fastp2p.UNet with some convolutions fused (fastp2p.nn.unet_conv, through the Triton
interpreter) where the module settings differ from the defaults (reviewer's items 4 and 5, as
tests/test_fused_forward_fidelity.py checks today's path): every LeakyReLU slope its own (a
module down conv's output goes through the level below's LeakyReLU), and BatchNorms with
``track_running_stats`` set to False after construction, which torch still normalizes with
their running statistics in eval. Against the reference UnetGenerator in float64 (DESIGN §5),
allocations poisoned with NaN; a choice table fuses three layers, the others run their modules.
"""

import pytest
import torch
import torch.nn as nn

from fastp2p.ops.backends import conv_choice
from helpers.conv_tables import write_conv_table
from helpers.network_checks import (compare_networks, count_fused_convs, poison_allocations,
                                    random_images, randomize_batchnorms, unet_pair)
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]

# The second and third down convs and the third decoder conv (num_downs 5, 32x32, batch 2):
# the third reads the second's batch norm + LeakyReLU (slope 0.15) in its fused prologue.
FUSED = [dict(norm="batch", dtype="float32", input=[2, 4, 16, 16], weight=[8, 4, 4, 4],
              stride=2, padding=1, transposed=False),
         dict(norm="batch", dtype="float32", input=[2, 8, 8, 8], weight=[16, 8, 4, 4],
              stride=2, padding=1, transposed=False),
         dict(norm="batch", dtype="float32", input=[2, 64, 2, 2], weight=[64, 16, 4, 4],
              stride=2, padding=1, transposed=True)]


def _levels(net):
    """The ``model`` Sequential of every level below the outermost, outermost first."""
    levels, block = [], net.model.model[1]
    while True:
        levels.append(block.model)
        if isinstance(block.model[3], nn.ConvTranspose2d):
            return levels
        block = block.model[3]


def _edit(net):
    for depth, level in enumerate(_levels(net)):
        level[0].negative_slope = 0.05 + 0.1 * depth  # none of them the default 0.2
    randomize_batchnorms(net, 6)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False


def test_slopes_and_untracked_batchnorms_through_a_mixed_chain(monkeypatch, tmp_path):
    table = write_conv_table(tmp_path / "conv_choice.json", FUSED)
    monkeypatch.setattr(conv_choice, "TABLE", table)
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = count_fused_convs(monkeypatch, KERNELS)
    poison_allocations(monkeypatch)
    ours, theirs64 = unet_pair("batch")
    for net in (ours, theirs64):
        _edit(net)
    compare_networks(ours, theirs64, random_images(32), True, "train")
    assert calls[0] == len(FUSED)
    with torch.no_grad():
        out = ours.eval()(random_images(32))
        expected = theirs64.eval()(random_images(32).double())
    assert_close(out, expected, FP32_NETWORK, "eval, running statistics")
    assert calls[0] == 2 * len(FUSED)
