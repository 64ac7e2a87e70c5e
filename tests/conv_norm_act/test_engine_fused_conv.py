"""Training steps of the engine with every conv of a tiny U-Net + PatchGAN fused
(FASTP2P_CONV=fused, Triton interpreter) against today's path (FASTP2P_CONV=module) from the
same weights and batches: the step's gradients within DESIGN §5's float32 network bound, the
losses and the updated weights and buffers within its training bound. One step only (~20 s):
the interpreter is slow, and the networks' own tests (test_unet_fused_conv.py,
test_patchgan_fused_conv.py) hold the fused math to 1e-4."""
import copy

import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.network_checks import count_fused_convs
from helpers.tolerances import FP32_NETWORK, TRAINING_200_STEPS, assert_close
from helpers.train_helpers import (gradients, loss_curve, parameters_and_buffers,
                                   random_batches, tiny_networks)
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]


def _train(monkeypatch, choice, netG, netD, batches):
    monkeypatch.setenv("FASTP2P_CONV", choice)
    return loss_curve(Pix2PixEngine(netG, netD), batches)


def test_fused_steps_track_todays_path(monkeypatch):
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    netG, netD = tiny_networks(norm="batch")
    fusedG, fusedD = copy.deepcopy(netG), copy.deepcopy(netD)
    batches = random_batches(1, batch_size=2)
    calls = count_fused_convs(monkeypatch, KERNELS)
    expected = _train(monkeypatch, "module", netG, netD, batches)
    assert calls[0] == 0
    got = _train(monkeypatch, "fused", fusedG, fusedD, batches)
    assert calls[0] == 10 + 3 * 4  # the U-Net once, the PatchGAN (n_layers 2) three times
    assert_close(got, expected, TRAINING_200_STEPS, "loss curves")
    for ours, theirs in zip(gradients(fusedG, fusedD), gradients(netG, netD)):
        assert_close(ours, theirs, FP32_NETWORK, "gradients of the step")  # same start weights
    for ours, theirs in zip(parameters_and_buffers(fusedG, fusedD),
                            parameters_and_buffers(netG, netD)):
        if ours.is_floating_point():
            assert_close(ours, theirs, TRAINING_200_STEPS, "weights and buffers")
        else:
            assert torch.equal(ours, theirs)
