"""MasterWeightsAdam on a GPU at full size (U-Net-256 + 70x70 PatchGAN): the compiled kernel's
update against torch.optim.Adam on float32 weights, the bf16 copy against ``.to(bfloat16)``, and
the engine's captured step with ``master_weights=True`` against the engine without it."""
import copy

import pytest
import torch

from fastp2p.bench.networks import FULL_CONFIG, build_pair, make_batch
from fastp2p.train.engine import LOSS_NAMES, Pix2PixEngine
from helpers.tolerances import BF16_NETWORK, assert_close

pytestmark = pytest.mark.cuda


def _flat(tensors):
    return torch.cat([t.detach().float().flatten() for t in tensors])


def test_full_size_steps_match_torch_adam_and_the_copy_is_the_rounded_master():
    from fastp2p.train.master_weights_adam import MasterWeightsAdam

    netG, _ = build_pair(FULL_CONFIG, fast=True, device="cuda", seed=0)
    netG.to(memory_format=torch.channels_last)
    expected = copy.deepcopy(netG)
    reference = torch.optim.Adam(expected.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt = MasterWeightsAdam(netG, lr=2e-4, betas=(0.5, 0.999), copy_dtype=torch.bfloat16)
    by_name = dict(expected.named_parameters())
    ref_params = [by_name[name] for name in opt._names]
    generator = torch.Generator(device="cuda").manual_seed(0)
    for step in range(3):
        for param, ref in zip(opt._params, ref_params):
            param.grad.copy_(torch.randn(param.shape, device="cuda", generator=generator) * 1e-2)
            ref.grad = param.grad.float().clone()
        opt.copy.fill_(float("nan"))
        opt.step()
        reference.step()
        assert_close(opt.master, _flat(ref_params), 1e-6, f"masters after step {step + 1}")
        assert torch.equal(opt.copy.view(torch.int16),
                           opt.master[:opt.num_copied].to(torch.bfloat16).view(torch.int16))
    assert opt.steps == 3


def test_captured_engine_with_master_weights_tracks_the_engine_without():
    losses = {}
    for master_weights in (False, True):
        netG, netD = build_pair(FULL_CONFIG, fast=True, device="cuda", seed=0)
        engine = Pix2PixEngine(netG, netD, precision="bf16", channels_last=True,
                               cuda_graph=True, master_weights=master_weights)
        real_a, real_b = make_batch(FULL_CONFIG, 1, "cuda")
        curve = []
        for _ in range(6):  # warm-up steps, the capture, replays
            engine.step(real_a, real_b)
            values = engine.read_losses()
            curve.append([values[name] for name in LOSS_NAMES])
        losses[master_weights] = torch.tensor(curve)
        if master_weights:
            opt = engine.optimizer_G
            assert torch.equal(opt.copy, opt.master[:opt.num_copied].to(torch.bfloat16))
            assert all(v.dtype == torch.float32 for v in netG.state_dict().values()
                       if v.is_floating_point())
            assert opt.steps == 6
    assert torch.isfinite(losses[True]).all()
    assert_close(losses[True], losses[False], BF16_NETWORK, "loss curves")
