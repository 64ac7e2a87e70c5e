"""fastp2p.GANLoss: the reference GANLoss with checked inputs."""
import torch

from fastp2p.reference.losses import GANLoss as _ReferenceGANLoss


class GANLoss(_ReferenceGANLoss):
    """``GANLoss(gan_mode)`` with gan_mode "vanilla" | "lsgan" | "wgangp"; called as
    ``loss(prediction, target_is_real)``; returns a 0-dim tensor."""

    def forward(self, prediction, target_is_real):
        if not isinstance(prediction, torch.Tensor) or not prediction.is_floating_point():
            raise ValueError("GANLoss expects the discriminator's floating-point logits, got "
                             f"{getattr(prediction, 'dtype', type(prediction).__name__)}")
        if prediction.numel() == 0:
            raise ValueError("GANLoss got an empty prediction tensor")
        if not isinstance(target_is_real, bool):
            raise ValueError(f"target_is_real must be True or False, got {target_is_real!r}")
        return super().forward(prediction, target_is_real)
