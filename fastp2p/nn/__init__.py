"""Public modules: the reference implementation's constructors and state_dicts, run fast."""
from fastp2p.nn.discriminators import PatchDiscriminator, PixelDiscriminator
from fastp2p.nn.graph_replay import GraphedModule, graphed
from fastp2p.nn.losses import GANLoss
from fastp2p.nn.unet import UNet

__all__ = ["GANLoss", "GraphedModule", "PatchDiscriminator", "PixelDiscriminator", "UNet",
           "graphed"]
