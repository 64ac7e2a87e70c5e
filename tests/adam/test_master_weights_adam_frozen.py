"""MasterWeightsAdam takes over a parameter frozen (requires_grad=False) when it is built: once
unfrozen, the parameter trains as under torch.optim.Adam (the engine freezes D for every G
step, so an optimizer built while D is frozen must still train all of D)."""
import copy

import pytest
import torch
import torch.nn as nn

from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.train_helpers import random_batches, tiny_networks
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]


def _network():
    torch.manual_seed(0)
    # no bias in front of the norm: its true gradient is 0, so Adam would turn float rounding
    # noise (which changes with the thread count) into full lr steps
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.InstanceNorm2d(4, affine=True),
                         nn.Conv2d(4, 2, 1))


def test_a_parameter_frozen_at_construction_trains_once_unfrozen():
    from fastp2p.train.master_weights_adam import MasterWeightsAdam
    net = _network()
    reference = copy.deepcopy(net)
    for model in (net, reference):
        model[0].weight.requires_grad_(False)
    opt = MasterWeightsAdam(net, lr=1e-2, copy_dtype=torch.float32)
    torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for model in (net, reference):
        model[0].weight.requires_grad_(True)
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()
        torch_opt.zero_grad()
        reference(x).square().sum().backward()
        torch_opt.step()
    start = _network().state_dict()
    for name, param in net.named_parameters():
        assert not torch.equal(param, start[name]), f"{name} did not move"
        # three steps of a network: its float32 gradients differ in the last bits, which
        # Adam's normalization magnifies on small ones
        assert_close(param, dict(reference.named_parameters())[name], FP32_NETWORK, name)


def test_an_engine_builds_on_networks_a_step_left_frozen():
    from fastp2p.train.engine import Pix2PixEngine
    netG, netD = tiny_networks()
    Pix2PixEngine(netG, netD).step(*random_batches(1)[0])
    assert not any(p.requires_grad for p in netD.parameters())   # the step leaves D frozen
    engine = Pix2PixEngine(netG, netD, master_weights=True)
    before = [p.detach().clone() for p in netD.parameters()]
    engine.step(*random_batches(1, seed=2)[0])
    assert all(not torch.equal(p, b) for p, b in zip(netD.parameters(), before))
