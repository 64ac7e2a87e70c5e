"""fastp2p: fast pix2pix. Drop-in U-Net / PatchGAN / GANLoss for the reference implementation."""
from fastp2p.nn import GANLoss, PatchDiscriminator, PixelDiscriminator, UNet, graphed
from fastp2p.reference.init import init_weights

__version__ = "0.1.0"

__all__ = ["GANLoss", "PatchDiscriminator", "PixelDiscriminator", "UNet", "__version__",
           "graphed", "init_weights"]
