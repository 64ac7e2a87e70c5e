"""The CUDA-graph half of test_engine_marks_weights_written: an eval-mode forward between
replayed steps (which write every parameter and buffer without bumping a version counter) sees
the weights of the step just replayed."""
import pytest
import torch

import fastp2p
from fastp2p.train.engine import WARMUP_STEPS, Pix2PixEngine
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.train_helpers import random_batches, tiny_networks

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("master_weights", [False, True], ids=["fused_adam", "master_weights"])
def test_an_eval_forward_between_replayed_steps_uses_the_stepped_weights(master_weights):
    netG, netD = (net.cuda() for net in tiny_networks())
    engine = Pix2PixEngine(netG, netD, lr=0.05, cuda_graph=True, master_weights=master_weights)
    batches = [tuple(t.cuda() for t in pair) for pair in random_batches(WARMUP_STEPS + 4)]
    x = batches[0][0][:1]
    for step, (real_A, real_B) in enumerate(batches):
        netG.train()
        engine.step(real_A, real_B)
        with torch.no_grad():
            got = netG.eval()(x)
            fresh = fastp2p.UNet(3, 3, 5, ngf=4, norm="batch").cuda()
            fresh.load_state_dict(netG.state_dict())
            expected = fresh.eval()(x)
        netG.train()
        assert_close(got, expected, FP32_NETWORK, f"eval after step {step}")
