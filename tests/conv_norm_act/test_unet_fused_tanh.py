"""The U-Net's fused outermost conv applies the network's Tanh in its epilogue and folds the tanh's
backward into its own: no aten tanh / tanh_backward runs for it (counted with a
TorchDispatchMode over forward and backward), and the network still matches the reference
module in float64 (DESIGN §5). The module path (no table) keeps torch.tanh. Through the Triton
interpreter; ngf 4, 32x32: the interpreter is slow."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastp2p.ops.backends import conv_choice
from helpers.conv_tables import write_conv_table
from helpers.network_checks import (compare_networks, count_fused_convs, poison_allocations,
                                    random_images, unet_pair)
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]

# num_downs 5, ngf 4, batch 2, 32x32: the outermost decoder conv reads skip (4 channels) and up
# (4 channels) at 16x16 and writes the 3-channel image.
OUTERMOST = dict(norm="none", dtype="float32", input=[2, 8, 16, 16], weight=[8, 3, 4, 4],
                 stride=2, padding=1, transposed=True)


class _TanhOps(TorchDispatchMode):
    """Counts the aten tanh and tanh_backward calls made while it is active."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.tanh, torch.ops.aten.tanh_,
                                   torch.ops.aten.tanh_backward):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _tanh_ops_of_a_training_step(net, x):
    with _TanhOps() as ops:
        net.train()(x).sum().backward()
    return ops.count


@pytest.fixture
def fused_calls(monkeypatch):
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = count_fused_convs(monkeypatch, KERNELS)
    poison_allocations(monkeypatch)
    return calls


def test_a_table_listing_the_outermost_conv_runs_no_tanh_op(monkeypatch, tmp_path, fused_calls):
    """Only the outermost conv fused (its sources from module layers): the reference's output
    and every gradient, and not one tanh op in its forward and backward."""
    table = write_conv_table(tmp_path / "conv_choice.json", [OUTERMOST])
    monkeypatch.setattr(conv_choice, "TABLE", table)
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
    ours, theirs64 = unet_pair("batch")
    compare_networks(ours, theirs64, random_images(32), True, "unet outermost fused")
    assert fused_calls[0] == 1
    assert _tanh_ops_of_a_training_step(ours, random_images(32)) == 0
    assert fused_calls[0] == 2


def test_every_conv_fused_runs_no_tanh_op(monkeypatch, fused_calls):
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    ours, _ = unet_pair("none")
    assert _tanh_ops_of_a_training_step(ours, random_images(32, batch=1)) == 0
    assert fused_calls[0] == 10


def test_the_module_path_keeps_torch_tanh(monkeypatch, fused_calls):
    """No table: today's path, whose tanh and tanh backward the counter sees."""
    monkeypatch.setenv("FASTP2P_CONV", "module")
    ours, _ = unet_pair("batch")
    assert _tanh_ops_of_a_training_step(ours, random_images(32)) == 2
    assert fused_calls[0] == 0
