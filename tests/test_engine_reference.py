"""The eager engine is the reference implementation's optimize_parameters, bit for bit on CPU."""
import pytest
import torch
import torch.nn.functional as F

from fastp2p.reference import GANLoss, NLayerDiscriminator, UnetGenerator, get_norm_layer
from fastp2p.train.engine import LOSS_NAMES, Pix2PixEngine
from train_helpers import parameters_and_buffers, random_batches, tiny_networks


def reference_networks(netG, netD, norm):
    """The reference modules with the same weights as fastp2p's."""
    refG = UnetGenerator(3, 3, netG.num_downs, ngf=netG.ngf, norm_layer=get_norm_layer(norm),
                         use_dropout=netG.use_dropout)
    refD = NLayerDiscriminator(6, ndf=netD.ndf, n_layers=netD.n_layers,
                               norm_layer=get_norm_layer(norm))
    refG.load_state_dict(netG.state_dict())
    refD.load_state_dict(netD.state_dict())
    return refG, refD


def reference_step(netG, netD, opt_G, opt_D, criterion, real_A, real_B, lambda_L1=100.0):
    """pix2pix_model.optimize_parameters of the reference implementation, written out."""
    fake_B = netG(real_A)
    for p in netD.parameters():
        p.requires_grad = True
    opt_D.zero_grad()
    loss_D_fake = criterion(netD(torch.cat((real_A, fake_B), 1).detach()), False)
    loss_D_real = criterion(netD(torch.cat((real_A, real_B), 1)), True)
    ((loss_D_fake + loss_D_real) * 0.5).backward()
    opt_D.step()
    for p in netD.parameters():
        p.requires_grad = False
    opt_G.zero_grad()
    loss_G_GAN = criterion(netD(torch.cat((real_A, fake_B), 1)), True)
    loss_G_L1 = F.l1_loss(fake_B, real_B) * lambda_L1
    (loss_G_GAN + loss_G_L1).backward()
    opt_G.step()
    return [loss_G_GAN.item(), loss_G_L1.item(), loss_D_real.item(), loss_D_fake.item()]


@pytest.mark.parametrize("norm,gan_mode,use_dropout", [
    ("batch", "vanilla", True), ("instance", "lsgan", False)], ids=["batch-vanilla-dropout",
                                                                   "instance-lsgan"])
def test_eager_engine_equals_reference_steps(norm, gan_mode, use_dropout):
    netG, netD = tiny_networks(norm=norm, num_downs=6, use_dropout=use_dropout)
    refG, refD = reference_networks(netG, netD, norm)
    opt_G = torch.optim.Adam(refG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(refD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = GANLoss(gan_mode)
    engine = Pix2PixEngine(netG, netD, gan_mode=gan_mode)
    for real_A, real_B in random_batches(3, size=64):
        torch.manual_seed(7)  # the same dropout masks on both sides
        expected = reference_step(refG, refD, opt_G, opt_D, criterion, real_A, real_B)
        torch.manual_seed(7)
        engine.step(real_A, real_B)
        got = engine.read_losses()
        assert [got[name] for name in LOSS_NAMES] == pytest.approx(expected, rel=1e-6)
    for ours, theirs in zip(parameters_and_buffers(netG, netD),
                            parameters_and_buffers(refG, refD)):
        assert torch.equal(ours, theirs)
    start_G, _ = tiny_networks(norm=norm, num_downs=6, use_dropout=use_dropout)
    assert not all(torch.equal(a, b) for a, b in zip(start_G.parameters(), netG.parameters()))


def test_losses_average_over_steps_between_reads():
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    batches = random_batches(2)
    per_step = []
    probe = Pix2PixEngine(*tiny_networks())
    for real_A, real_B in batches:
        probe.step(real_A, real_B)
        per_step.append(probe.read_losses())
        engine.step(real_A, real_B)
    averaged = engine.read_losses()
    for name in LOSS_NAMES:
        assert averaged[name] == pytest.approx((per_step[0][name] + per_step[1][name]) / 2)
    assert all(v != v for v in engine.read_losses().values())  # nothing since the last read


def test_set_lr_changes_both_optimizers_and_zero_lr_freezes_weights():
    netG, netD = tiny_networks()
    engine = Pix2PixEngine(netG, netD)
    engine.set_lr(0.0)
    params = list(netG.parameters()) + list(netD.parameters())
    before = [p.detach().clone() for p in params]
    engine.step(*random_batches(1)[0])
    assert engine.lr == 0.0
    for group in engine.optimizer_G.param_groups + engine.optimizer_D.param_groups:
        assert group["lr"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    engine.set_lr(2e-4)
    engine.step(*random_batches(1)[0])
    assert not any(torch.equal(a, b) for a, b in zip(before, params))


def test_bad_options_raise_value_errors():
    netG, netD = tiny_networks()
    with pytest.raises(ValueError, match="precision"):
        Pix2PixEngine(netG, netD, precision="fp16")
    with pytest.raises(ValueError, match="CUDA"):
        Pix2PixEngine(netG, netD, cuda_graph=True)
    with pytest.raises(ValueError, match="gan_mode"):
        Pix2PixEngine(netG, netD, gan_mode="hinge")
    engine = Pix2PixEngine(netG, netD)
    with pytest.raises(ValueError, match="same batch size"):
        engine.step(torch.zeros(2, 3, 32, 32), torch.zeros(1, 3, 32, 32))
