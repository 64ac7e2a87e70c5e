"""An eval-mode forward between training steps sees the current weights: the engine bumps the
version counters of everything a step wrote, since MasterWeightsAdam's Triton kernel (and a
CUDA-graph replay) write parameters and buffers without them, and the inference caches (folded
BatchNorm, packed oneDNN weights: fastp2p.nn.folding) are keyed on them. The master-weights
engine runs its kernel through the Triton interpreter."""
import pytest
import torch

import fastp2p
from fastp2p.train.engine import Pix2PixEngine
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.train_helpers import random_batches, tiny_networks
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter, pytest.mark.skipif(
    KERNELS is None, reason="interpreter tests: need triton ('.[test]') and no GPU")]


def _fresh_eval_output(netG, x):
    """netG's eval output computed by a new module with its weights (no cache of netG's)."""
    fresh = fastp2p.UNet(3, 3, 5, ngf=4, norm="batch")
    fresh.load_state_dict(netG.state_dict())
    with torch.no_grad():
        return fresh.eval()(x)


@pytest.mark.parametrize("master_weights", [False, True], ids=["torch_adam", "master_weights"])
def test_an_eval_forward_after_a_step_uses_the_stepped_weights(one_thread, master_weights):
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD, lr=0.05, master_weights=master_weights)
    batches = random_batches(3)
    x = batches[0][0][:1]
    for real_A, real_B in batches:
        with torch.no_grad():
            before = netG.eval()(x)  # builds the eval caches from this step's weights
        assert_close(before, _fresh_eval_output(netG, x), FP32_NETWORK, "eval before the step")
        netG.train()
        engine.step(real_A, real_B)
        with torch.no_grad():
            after = netG.eval()(x)
        netG.train()
        assert_close(after, _fresh_eval_output(netG, x), FP32_NETWORK, "eval after the step")
        assert not torch.equal(after, before)  # the step moved the weights


def test_the_bump_costs_one_call_for_every_parameter_and_buffer(monkeypatch):
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    bumped = []
    monkeypatch.setattr(torch.autograd.graph, "increment_version",
                        lambda tensors: bumped.append(tensors))
    engine.step(*random_batches(1)[0])
    everything = {id(t) for t in (*netG.parameters(), *netG.buffers(), *netD.parameters(),
                                  *netD.buffers())}
    assert [{id(t) for t in tensors} for tensors in bumped].count(everything) == 1


def test_master_weights_adam_used_alone_marks_what_its_step_wrote(one_thread):
    """The same for MasterWeightsAdam stepped by hand, outside the engine."""
    from fastp2p.train.master_weights_adam import MasterWeightsAdam
    torch.manual_seed(0)
    netG = fastp2p.UNet(3, 3, 5, ngf=4, norm="batch")
    optimizer = MasterWeightsAdam(netG, lr=0.05, copy_dtype=torch.float32)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        before = netG.eval()(x)  # builds the eval caches from these weights
    for param in optimizer._params:
        param.grad.copy_(torch.randn(param.shape))
    optimizer.step()
    with torch.no_grad():
        after = netG(x)
    assert_close(after, _fresh_eval_output(netG, x), FP32_NETWORK, "eval after the step")
    assert not torch.equal(after, before)
