"""The engine's bf16 CUDA step (bf16 autocast, channels-last, one CUDA graph after WARMUP_STEPS
eager steps) with every conv of a small U-Net + PatchGAN fused (FASTP2P_CONV=fused: the fused
convolution under autocast, fastp2p.nn.fused_conv.fused_conv_norm) against today's path
(FASTP2P_CONV=module) from the same weights and batches: the fused conv runs in the eager
steps and in the captured graph, and the losses track today's within bf16's noise; with and
without MasterWeightsAdam (bf16 conv weights, float32 norm parameters). GPU only: the CPU
interpreter's bf16 tl.dot is not meaningful (the CPU proof of the routing is
test_fused_conv_autocast.py)."""
import copy

import pytest
import torch

from fastp2p.ops.backends import conv_fused_backend
from fastp2p.train.engine import LOSS_NAMES, WARMUP_STEPS, Pix2PixEngine
from helpers.forced_backend import force_backend
from helpers.train_helpers import loss_curve, random_batches, tiny_networks
from helpers.training_moved import assert_moved_like_the_peer, snapshot

pytestmark = pytest.mark.cuda
STEPS = WARMUP_STEPS + 4  # eager steps, the captured one, replays


def _train(monkeypatch, choice, netG, netD, batches, master_weights):
    monkeypatch.setenv("FASTP2P_CONV", choice)
    engine = Pix2PixEngine(netG, netD, precision="bf16", channels_last=True, cuda_graph=True,
                           master_weights=master_weights)
    curve = loss_curve(engine, batches)
    assert engine._graph is not None  # the last steps were replays
    return curve


@pytest.mark.parametrize("master_weights", [False, True], ids=["fp32-weights", "master"])
def test_bf16_graph_step_with_fused_convs_tracks_todays_path(monkeypatch, master_weights):
    force_backend(monkeypatch, "triton")
    netG, netD = (net.cuda() for net in tiny_networks(norm="batch", num_downs=6, ngf=8, ndf=8))
    fusedG, fusedD = copy.deepcopy(netG), copy.deepcopy(netD)
    batches = [(a.cuda(), b.cuda()) for a, b in random_batches(STEPS, batch_size=2, size=64)]
    backend = conv_fused_backend(torch.device("cuda"))
    calls, launcher = [0], backend.conv_fused_fwd

    def counted(*args, **kwargs):
        calls[0] += 1
        return launcher(*args, **kwargs)

    monkeypatch.setattr(backend.module, "conv_fused_fwd", counted)
    starts = snapshot(netG, netD)
    expected = _train(monkeypatch, "module", netG, netD, batches, master_weights)
    assert calls[0] == 0
    got = _train(monkeypatch, "fused", fusedG, fusedD, batches, master_weights)
    # Python runs the launchers only in the eager steps and the capture (not in replays): 12
    # convs of the U-Net and 4 of the PatchGAN, three times, per step.
    assert calls[0] == (WARMUP_STEPS + 1) * (12 + 3 * 4)
    assert torch.isfinite(got).all()
    # The L1 term is a mean over every pixel: bf16 rounding moves it by well under 5 %; the
    # GAN terms (around log 2) within 0.1, as test_engine_cuda.py holds bf16 against fp32.
    l1 = LOSS_NAMES.index("G_L1")
    assert torch.allclose(got[:, l1], expected[:, l1], rtol=0.05)
    others = [i for i in range(len(LOSS_NAMES)) if i != l1]
    assert torch.allclose(got[:, others], expected[:, others], atol=0.1, rtol=0)
    # bounds this loose would pass untouched networks: the fused run must have trained as the
    # module run did
    assert_moved_like_the_peer((fusedG, fusedD), (netG, netD), starts)
