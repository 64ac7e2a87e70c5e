"""Second-round review fixes of stop 17 (each test fails on the code before them):
a GAN label written through ``.data`` after the first call (CPU), and load_state_dict with
strict=False and an extra non-tensor entry."""
import pytest
import torch

import fastp2p
from fastp2p.reference import GANLoss as ReferenceGANLoss
from fastp2p.reference import NLayerDiscriminator, UnetGenerator


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_a_label_written_through_data_after_the_first_call_is_used(gan_mode):
    """One-sided label smoothing written the old way, ``real_label.data.fill_(0.9)``, bumps no
    version counter; on the CPU the labels are read on every call, so it is seen."""
    ours, theirs = fastp2p.GANLoss(gan_mode), ReferenceGANLoss(gan_mode)
    logits = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    assert ours(logits, True).item() == pytest.approx(theirs(logits, True).item(), rel=1e-6)
    for loss in (ours, theirs):
        loss.real_label.data.fill_(0.9)
    assert ours(logits, True).item() == pytest.approx(theirs(logits, True).item(), rel=1e-6)
    assert not ours.has_default_labels()


@pytest.mark.parametrize("networks", [
    lambda: (fastp2p.UNet(3, 3, 5, ngf=4), UnetGenerator(3, 3, 5, ngf=4)),
    lambda: (fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2), NLayerDiscriminator(6, 4, 2)),
], ids=["unet", "patchgan"])
def test_strict_false_reports_an_extra_non_tensor_entry_as_the_reference_does(networks):
    ours, theirs = networks()
    state = {**theirs.state_dict(), "epoch": 3}
    assert ours.load_state_dict(state, strict=False) == theirs.load_state_dict(state, strict=False)
    with pytest.raises(ValueError, match="'epoch' holds a int"):
        ours.load_state_dict(state)   # strict: the one-line error naming the entry
