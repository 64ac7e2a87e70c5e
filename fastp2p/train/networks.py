"""The one builder of pix2pix's networks: fastp2p's modules (or, for comparison, the reference
implementation's) from a ``NetworkConfig``; the command line's options map onto one.

The training and test commands build from their options (``generator_from_options``); the
benchmark peers (fastp2p.bench.networks) build both module families from the same config.
"""
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch

import fastp2p
from fastp2p import reference

DISCRIMINATORS = ("patch", "pixel")


@dataclass(frozen=True)
class NetworkConfig:
    """pix2pix's defaults: U-Net-256 (batch norm, dropout), 70x70 PatchGAN, 256x256 RGB pairs.

    ``image_size``: the square size the networks will see (checked against the U-Net depth), or
    None when it is not fixed here (the command line checks its data itself).
    """

    image_size: Optional[int] = 256
    num_downs: int = 8
    ngf: int = 64
    ndf: int = 64
    n_layers: int = 3
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    use_dropout: bool = True
    discriminator: str = "patch"     # "patch" (PatchGAN, n_layers) | "pixel" (1x1 PixelGAN)

    def __post_init__(self):
        if self.image_size is not None and self.image_size % (2 ** self.num_downs):
            raise ValueError(f"image_size {self.image_size} must be a multiple of "
                             f"2**num_downs = {2 ** self.num_downs}")
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(f"discriminator must be one of {DISCRIMINATORS}, got "
                             f"{self.discriminator!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.image_size}x{self.image_size}, U-Net num_downs={self.num_downs} "
                f"(ngf {self.ngf}, {self.norm} norm{', dropout' if self.use_dropout else ''}) + "
                f"PatchGAN n_layers={self.n_layers} (ndf {self.ndf})")


def build_generator(config: NetworkConfig, *, fast: bool = True) -> torch.nn.Module:
    """fastp2p.UNet (``fast``) or the reference UnetGenerator, not yet initialised."""
    if fast:
        return fastp2p.UNet(config.input_nc, config.output_nc, config.num_downs, ngf=config.ngf,
                            norm=config.norm, use_dropout=config.use_dropout)
    return reference.UnetGenerator(config.input_nc, config.output_nc, config.num_downs,
                                   config.ngf, reference.get_norm_layer(config.norm),
                                   config.use_dropout)


def build_discriminator(config: NetworkConfig, *, fast: bool = True) -> torch.nn.Module:
    """The PatchGAN (or PixelGAN) on (A, B) pairs: input_nc + output_nc channels."""
    channels = config.input_nc + config.output_nc
    if config.discriminator == "pixel":
        if fast:
            return fastp2p.PixelDiscriminator(channels, ndf=config.ndf, norm=config.norm)
        return reference.PixelDiscriminator(channels, config.ndf,
                                            reference.get_norm_layer(config.norm))
    if fast:
        return fastp2p.PatchDiscriminator(channels, ndf=config.ndf, n_layers=config.n_layers,
                                          norm=config.norm)
    return reference.NLayerDiscriminator(channels, config.ndf, config.n_layers,
                                         reference.get_norm_layer(config.norm))


def unet_levels(netG: str) -> int:
    """num_downs of ``unet_N`` (N a power of two >= 32): unet_256 -> 8, unet_128 -> 7."""
    prefix, _, size = netG.partition("_")
    if prefix == "unet" and size.isdigit():
        side = int(size)
        if side >= 32 and side & (side - 1) == 0:
            return side.bit_length() - 1
    resnet = " (the reference's ResNet generators are not provided)" if prefix == "resnet" else ""
    raise ValueError(f"--netG must be unet_256, unet_128 or unet_N with N a power of two >= 32, "
                     f"got {netG!r}{resnet}")


def _module_norm(norm: str) -> str:
    # syncbatch is BatchNorm2d converted after construction (same parameters and state_dict).
    return "batch" if norm == "syncbatch" else norm


def _generator_config(args) -> NetworkConfig:
    return NetworkConfig(image_size=None, num_downs=unet_levels(args.netG), ngf=args.ngf,
                         input_nc=args.input_nc, output_nc=args.output_nc,
                         norm=_module_norm(args.norm), use_dropout=not args.no_dropout)


def generator_from_options(args) -> torch.nn.Module:
    """fastp2p.UNet per --netG/--ngf/--norm/--no_dropout, initialised per --init_type/gain."""
    netG = build_generator(_generator_config(args))
    return fastp2p.init_weights(netG, args.init_type, args.init_gain)


def discriminator_from_options(args) -> torch.nn.Module:
    """PatchGAN (--netD basic: 3 layers; n_layers: --n_layers_D) or PixelGAN (pixel)."""
    layers = {"basic": 3, "n_layers": args.n_layers_D, "pixel": 3}
    if args.netD not in layers:
        raise ValueError(f"--netD must be basic, n_layers or pixel, got {args.netD!r}")
    config = NetworkConfig(image_size=None, ndf=args.ndf, n_layers=layers[args.netD],
                           input_nc=args.input_nc, output_nc=args.output_nc,
                           norm=_module_norm(args.norm),
                           discriminator="pixel" if args.netD == "pixel" else "patch")
    return fastp2p.init_weights(build_discriminator(config), args.init_type, args.init_gain)


class SavedNetwork(NamedTuple):
    """What a network file holds, read off its keys and shapes (``options_saved_in``)."""
    which: str    # "G" or "D", as NETWORK_SUFFIXES names the files
    kind: str     # "U-Net generator", "PatchGAN discriminator" or "PixelGAN discriminator"
    options: str  # the command-line model options that build it


def options_saved_in(state_dict: dict) -> SavedNetwork | None:
    """The network ``state_dict`` was saved from (a U-Net, PatchGAN or PixelGAN) and the
    command-line model options that build it, or None for none of them."""
    from fastp2p.nn.checkpoint import (infer_patchgan_config, infer_pixelgan_config,
                                       infer_unet_config)
    for infer in (infer_unet_config, infer_patchgan_config, infer_pixelgan_config):
        try:
            config = infer(state_dict)
        except ValueError:
            continue
        if infer is infer_unet_config:
            return SavedNetwork("G", "U-Net generator",
                                f"--netG unet_{2 ** config['num_downs']} --ngf {config['ngf']} "
                                f"--norm {config['norm']} --input_nc {config['input_nc']} "
                                f"--output_nc {config['output_nc']}")
        if infer is infer_pixelgan_config:
            kind, netD = "PixelGAN", "--netD pixel"
        elif config["n_layers"] == 3:
            kind, netD = "PatchGAN", "--netD basic"
        else:
            kind, netD = "PatchGAN", f"--netD n_layers --n_layers_D {config['n_layers']}"
        return SavedNetwork("D", f"{kind} discriminator",
                            f"{netD} --ndf {config['ndf']} --norm {config['norm']} (and "
                            f"input_nc + output_nc = {config['input_nc']})")
    return None
