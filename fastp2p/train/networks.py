"""Build the generator and discriminator from the command-line options, as the reference does."""
import torch

import fastp2p


def unet_levels(netG: str) -> int:
    """num_downs of ``unet_N`` (N a power of two >= 32): unet_256 -> 8, unet_128 -> 7."""
    prefix, _, size = netG.partition("_")
    if prefix == "unet" and size.isdigit():
        side = int(size)
        if side >= 32 and side & (side - 1) == 0:
            return side.bit_length() - 1
    raise ValueError(f"--netG must be unet_256, unet_128 or unet_N with N a power of two >= 32, "
                     f"got {netG!r} (the ResNet generators of the reference are not provided)")


def _module_norm(norm: str) -> str:
    # syncbatch is BatchNorm2d converted after construction (same parameters and state_dict).
    return "batch" if norm == "syncbatch" else norm


def build_generator(args) -> torch.nn.Module:
    """fastp2p.UNet per --netG/--ngf/--norm/--no_dropout, initialised per --init_type/gain."""
    netG = fastp2p.UNet(args.input_nc, args.output_nc, unet_levels(args.netG), ngf=args.ngf,
                        norm=_module_norm(args.norm), use_dropout=not args.no_dropout)
    return fastp2p.init_weights(netG, args.init_type, args.init_gain)


def build_discriminator(args) -> torch.nn.Module:
    """PatchGAN or PixelGAN on (A, B) pairs: input_nc + output_nc channels."""
    channels, norm = args.input_nc + args.output_nc, _module_norm(args.norm)
    if args.netD == "basic":
        netD = fastp2p.PatchDiscriminator(channels, ndf=args.ndf, n_layers=3, norm=norm)
    elif args.netD == "n_layers":
        netD = fastp2p.PatchDiscriminator(channels, ndf=args.ndf, n_layers=args.n_layers_D,
                                          norm=norm)
    elif args.netD == "pixel":
        netD = fastp2p.PixelDiscriminator(channels, ndf=args.ndf, norm=norm)
    else:
        raise ValueError(f"--netD must be basic, n_layers or pixel, got {args.netD!r}")
    return fastp2p.init_weights(netD, args.init_type, args.init_gain)
