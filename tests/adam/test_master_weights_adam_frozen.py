"""MasterWeightsAdam leaves frozen parameters (requires_grad=False) alone, as torch.optim.Adam
skips a parameter whose .grad is None: with weight decay it used to move them (each had a
permanent zero gradient that the kernel decayed)."""
import copy

import pytest
import torch
import torch.nn as nn

from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]



def _network():
    torch.manual_seed(0)
    # no bias in front of the norm: its true gradient is 0, so Adam would turn float rounding
    # noise (which changes with the thread count) into full lr steps
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.InstanceNorm2d(4, affine=True),
                        nn.Conv2d(4, 2, 1))
    net[0].weight.requires_grad_(False)  # a frozen layer beside trainable ones
    net[1].bias.requires_grad_(False)    # and a frozen parameter the copy does not hold
    return net


@pytest.mark.parametrize("copy_dtype", [torch.float32], ids=["fp32"])
def test_frozen_parameters_stay_and_the_others_follow_torch_adam(copy_dtype):
    from fastp2p.train.master_weights_adam import MasterWeightsAdam
    net = _network()
    reference = copy.deepcopy(net)
    frozen = {name: p.detach().clone() for name, p in net.named_parameters() if not p.requires_grad}
    opt = MasterWeightsAdam(net, lr=1e-2, weight_decay=0.1, copy_dtype=copy_dtype)
    torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-2, weight_decay=0.1)
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()
        torch_opt.zero_grad()
        reference(x).square().sum().backward()
        torch_opt.step()
    for name, param in net.named_parameters():
        expected = dict(reference.named_parameters())[name]
        if name in frozen:
            assert param.grad is None, name
            assert torch.equal(param, frozen[name]), f"{name} moved"
        else:
            assert not torch.equal(param, _network().state_dict()[name]), f"{name} did not move"
            # three steps of a network: its float32 gradients differ in the last bits, which
            # Adam's normalization magnifies on small ones
            assert_close(param, expected, FP32_NETWORK, name)
    assert set(frozen) == {"0.weight", "1.bias"}
    assert not any(name in frozen for name in opt.state_dict()["param_groups"][0]["params"])


def test_a_module_with_nothing_to_train_is_refused():
    from fastp2p.train.master_weights_adam import MasterWeightsAdam
    net = nn.Conv2d(3, 4, 3).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters that require grad"):
        MasterWeightsAdam(net, copy_dtype=torch.float32)
