"""The pix2pix networks every peer trains: same configuration, same seed, same weights.

Built by the one builder (fastp2p.train.networks): the reference peers get ``fastp2p.reference``'s
modules (imported, never copied), the fastp2p peer the public ``fastp2p.UNet`` /
``fastp2p.PatchDiscriminator``. Both consume the global RNG in the same order, so one seed gives
identical initial weights.
"""
import torch

from fastp2p.train.networks import NetworkConfig, build_discriminator, build_generator

__all__ = ["FULL_CONFIG", "QUICK_CONFIG", "NetworkConfig", "build_discriminator",
           "build_generator", "build_pair", "make_batch"]

FULL_CONFIG = NetworkConfig()
# CPU smoke-test size: the same architecture family, small enough for CI's shared cores.
QUICK_CONFIG = NetworkConfig(image_size=64, num_downs=6, ngf=8, ndf=8)


def build_pair(config: NetworkConfig, *, fast: bool, device, seed: int = 0):
    """(G, D) on ``device``, initialised as pix2pix does (normal, gain 0.02) from ``seed``."""
    from fastp2p.reference import init_weights

    torch.manual_seed(seed)
    generator = build_generator(config, fast=fast)
    discriminator = build_discriminator(config, fast=fast)
    init_weights(generator, "normal", 0.02)
    init_weights(discriminator, "normal", 0.02)
    return generator.to(device), discriminator.to(device)


def make_batch(config: NetworkConfig, batch_size: int, device, seed: int = 1):
    """A random (A, B) pair batch in [-1, 1] (never zeros), NCHW float32."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, config.input_nc, config.image_size, config.image_size)
    real_a = torch.rand(shape, generator=generator) * 2 - 1
    shape_b = (batch_size, config.output_nc, config.image_size, config.image_size)
    real_b = torch.rand(shape_b, generator=generator) * 2 - 1
    return real_a.to(device), real_b.to(device)
