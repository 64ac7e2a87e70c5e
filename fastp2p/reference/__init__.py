"""Plain-PyTorch definitions of pix2pix's networks and losses: the meaning of "correct".

Module trees (and therefore ``state_dict`` keys, shapes and the order in which construction
consumes the global RNG) are identical to the reference implementation's ``models/networks.py``
(junyanz/pytorch-CycleGAN-and-pix2pix). Nothing here uses a kernel; this package imports only
torch, so every fused path in fastp2p can be tested against it.
"""
from fastp2p.reference.discriminators import NLayerDiscriminator, PixelDiscriminator
from fastp2p.reference.init import init_weights
from fastp2p.reference.losses import GANLoss
from fastp2p.reference.norm import get_norm_layer, uses_conv_bias
from fastp2p.reference.unet import UnetGenerator, UnetSkipConnectionBlock

__all__ = [
    "GANLoss",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "get_norm_layer",
    "init_weights",
    "uses_conv_bias",
]
