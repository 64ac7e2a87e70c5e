"""Tiny pix2pix networks and batches shared by the training tests (CPU-cheap: ngf 4, 32x32)."""
import torch

import fastp2p


def tiny_networks(seed=0, norm="batch", num_downs=5, ngf=4, ndf=4, use_dropout=False):
    """A fastp2p U-Net and PatchGAN initialised like the reference (normal, gain 0.02)."""
    torch.manual_seed(seed)
    netG = fastp2p.init_weights(fastp2p.UNet(3, 3, num_downs, ngf=ngf, norm=norm,
                                             use_dropout=use_dropout))
    netD = fastp2p.init_weights(fastp2p.PatchDiscriminator(6, ndf=ndf, n_layers=2, norm=norm))
    return netG, netD


def random_batches(count, batch_size=2, size=32, seed=1):
    """``count`` (A, B) pairs of random images in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return [tuple(torch.rand(batch_size, 3, size, size, generator=generator) * 2 - 1
                  for _ in range(2)) for _ in range(count)]


def parameters_and_buffers(*nets):
    return [t.detach().clone() for net in nets for t in
            list(net.parameters()) + list(net.buffers())]
