"""The engine's GAN losses are float32 in every mode, whatever the logits' dtype: GANLoss now
returns the reference's dtype, which for wgangp is the logits' (bf16 under a bf16 step), and the
engine sums and logs these losses (a bf16 loss keeps about 3 significant digits)."""
import pytest
import torch

from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import tiny_networks


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan", "wgangp"])
@pytest.mark.parametrize("target_is_real", [True, False])
def test_bf16_logits_give_a_float32_loss_of_their_values(gan_mode, target_is_real):
    engine = Pix2PixEngine(*tiny_networks(), gan_mode=gan_mode)
    logits = (torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 3
              ).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = engine._gan_loss(logits, target_is_real)
    assert loss.dtype == torch.float32
    expected = engine.criterionGAN(logits.detach().double(), target_is_real)
    torch.testing.assert_close(loss.double(), expected.double(), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16
