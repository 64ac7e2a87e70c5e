"""The generators --netG names (unet_N), read without torch, so that train and test refuse
another name before loading torch (fastp2p.train.early_refusals)."""


def unet_levels(netG: str) -> int:
    """num_downs of ``unet_N`` (N a power of two >= 32): unet_256 -> 8, unet_128 -> 7."""
    prefix, _, size = netG.partition("_")
    if prefix == "unet" and size.isascii() and size.isdigit():   # not "unet_٣٢" nor "unet_²"
        side = int(size)
        if side >= 32 and side & (side - 1) == 0:
            return side.bit_length() - 1
    resnet = " (the reference's ResNet generators are not provided)" if prefix == "resnet" else ""
    raise ValueError(f"--netG must be unet_256, unet_128 or unet_N with N a power of two >= 32, "
                     f"got {netG!r}{resnet}")
