"""The pix2pix networks every peer trains: same configuration, same seed, same weights.

The reference peers use ``fastp2p.reference`` (imported, never copied); the fastp2p peer the
public ``fastp2p.UNet`` / ``fastp2p.PatchDiscriminator``. Both consume the global RNG in the
same order, so one seed gives identical initial weights.
"""
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class NetworkConfig:
    """pix2pix's defaults: U-Net-256 (batch norm, dropout), 70x70 PatchGAN, 256x256 RGB pairs."""

    image_size: int = 256
    num_downs: int = 8
    ngf: int = 64
    ndf: int = 64
    n_layers: int = 3
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    use_dropout: bool = True

    def __post_init__(self):
        if self.image_size % (2 ** self.num_downs):
            raise ValueError(f"image_size {self.image_size} must be a multiple of "
                             f"2**num_downs = {2 ** self.num_downs}")

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}, U-Net num_downs={self.num_downs} "
                f"(ngf {self.ngf}, {self.norm} norm{', dropout' if self.use_dropout else ''}) + "
                f"PatchGAN n_layers={self.n_layers} (ndf {self.ndf})")


FULL_CONFIG = NetworkConfig()
# CPU smoke-test size: the same architecture family, small enough for CI's shared cores.
QUICK_CONFIG = NetworkConfig(image_size=64, num_downs=6, ngf=8, ndf=8)


def build_generator(config: NetworkConfig, *, fast: bool) -> torch.nn.Module:
    if fast:
        import fastp2p
        return fastp2p.UNet(config.input_nc, config.output_nc, config.num_downs, ngf=config.ngf,
                            norm=config.norm, use_dropout=config.use_dropout)
    from fastp2p.reference import UnetGenerator, get_norm_layer
    return UnetGenerator(config.input_nc, config.output_nc, config.num_downs, config.ngf,
                         get_norm_layer(config.norm), config.use_dropout)


def build_discriminator(config: NetworkConfig, *, fast: bool) -> torch.nn.Module:
    channels = config.input_nc + config.output_nc
    if fast:
        import fastp2p
        return fastp2p.PatchDiscriminator(channels, ndf=config.ndf, n_layers=config.n_layers,
                                          norm=config.norm)
    from fastp2p.reference import NLayerDiscriminator, get_norm_layer
    return NLayerDiscriminator(channels, config.ndf, config.n_layers, get_norm_layer(config.norm))


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
