"""fastp2p.GANLoss honours the labels in its ``real_label`` / ``fake_label`` buffers however
they got there (constructor, load_state_dict from a reference GANLoss, an in-place write, a new
buffer), forward and gradient, in every gan mode; reads them only after they change; and the
training engine refuses labels its fused step losses or captured graph would ignore."""
import pytest
import torch

import fastp2p
from fastp2p.reference import GANLoss as ReferenceGANLoss
from fastp2p.train.engine import Pix2PixEngine
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.train_helpers import random_batches, tiny_networks

MODES = ["vanilla", "lsgan", "wgangp"]


def _constructed(ours, real, fake):
    return fastp2p.GANLoss(ours.gan_mode, real, fake)


def _loaded(ours, real, fake):
    ours.load_state_dict(ReferenceGANLoss(ours.gan_mode, real, fake).state_dict())
    return ours


def _written_in_place(ours, real, fake):
    with torch.no_grad():
        ours.real_label.fill_(real)
        ours.fake_label.fill_(fake)
    return ours


def _replaced(ours, real, fake):
    ours.real_label = torch.tensor(real)
    ours.fake_label = torch.tensor(fake)
    return ours


def _assert_matches_reference(ours, real_label, fake_label):
    gen = torch.Generator().manual_seed(3)
    x64 = torch.randn(2, 1, 6, 5, generator=gen, dtype=torch.float64) * 2
    reference = ReferenceGANLoss(ours.gan_mode, real_label, fake_label).double()
    for target_is_real in (True, False):
        ref_in = x64.clone().requires_grad_()
        expected = reference(ref_in, target_is_real)
        expected.backward()
        x = x64.float().requires_grad_()
        loss = ours(x, target_is_real)
        loss.backward()
        assert_close(loss, expected, FP32_SINGLE_OP, f"loss, target_is_real={target_is_real}")
        assert_close(x.grad, ref_in.grad, FP32_SINGLE_OP, f"grad, target_is_real={target_is_real}")


# Both labels changed, and each alone (a check for the default labels that read one of them
# took the other's change for the default).
@pytest.mark.parametrize("labels", [(0.9, 0.2), (1.0, 0.2), (0.9, 0.0)], ids=str)
@pytest.mark.parametrize("set_labels", [_constructed, _loaded, _written_in_place, _replaced])
@pytest.mark.parametrize("mode", MODES)
def test_labels_set_any_way_are_honoured(mode, set_labels, labels):
    ours = fastp2p.GANLoss(mode)
    _assert_matches_reference(ours, 1.0, 0.0)  # the default labels seen first
    _assert_matches_reference(set_labels(ours, *labels), *labels)


@pytest.mark.parametrize("mode", MODES)
def test_labels_written_back_to_default_take_the_fused_op_again(mode, monkeypatch):
    ours = _written_in_place(fastp2p.GANLoss(mode), 0.9, 0.2)
    _assert_matches_reference(ours, 0.9, 0.2)
    with torch.no_grad():
        ours.real_label.fill_(1.0)
        ours.fake_label.fill_(0.0)
    fused_calls = []
    original = fastp2p.nn.losses.gan_loss
    monkeypatch.setattr(fastp2p.nn.losses, "gan_loss",
                        lambda *args: fused_calls.append(args) or original(*args))
    _assert_matches_reference(ours, 1.0, 0.0)
    assert len(fused_calls) == 2


@pytest.mark.cuda
def test_labels_on_a_device_are_read_only_after_they_change(monkeypatch):
    """Reading a label's value (bool / item of a device tensor) syncs with the device: once
    after each change, never per call. (CPU labels are read on every call: no sync there, and
    a write through .data, which bumps no version, is seen:
    test_a_label_written_through_data_after_the_first_call_is_used.)"""
    ours = fastp2p.GANLoss("lsgan").cuda()
    x = torch.randn(2, 1, 4, 4, device="cuda")
    ours(x, True)
    reads = []
    for name in ("__bool__", "item"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, _original=original: reads.append(1) or _original(self))
    for _ in range(3):
        ours(x, True)
        ours(x, False)
    assert reads == []
    with torch.no_grad():
        ours.real_label.fill_(0.9)
    ours(x, True)
    ours(x, False)
    assert 0 < len(reads) <= 2


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_engine_refuses_labels_its_fused_losses_would_ignore(one_thread, gan_mode):
    engine = Pix2PixEngine(*tiny_networks(), gan_mode=gan_mode, fused_step_losses=True)
    (real_A, real_B), = random_batches(1)
    engine.step(real_A, real_B)
    with torch.no_grad():
        engine.criterionGAN.real_label.fill_(0.9)
    with pytest.raises(ValueError, match=r"real 0\.9 / fake 0.*fused_step_losses=False"):
        engine.step(real_A, real_B)


def test_engine_without_fused_losses_trains_against_the_labels_set(one_thread):
    """The unfused engine takes the new labels: its logged D_real loss is the lsgan loss
    against 0.9."""
    engine = Pix2PixEngine(*tiny_networks(), gan_mode="lsgan")
    with torch.no_grad():
        engine.criterionGAN.real_label.fill_(0.9)
    (real_A, real_B), = random_batches(1)
    reference = ReferenceGANLoss("lsgan", 0.9)
    with torch.no_grad():
        logits = engine.netD(torch.cat([real_A, real_B], 1))
    expected = reference(logits, True).item()
    engine.step(real_A, real_B)
    assert engine.read_losses()["D_real"] == pytest.approx(expected, rel=1e-5)


def test_labels_made_under_inference_mode_are_read():
    """Inference tensors have no version counter to watch: their labels are read each call."""
    with torch.inference_mode():
        ours = fastp2p.GANLoss("lsgan")
        x = torch.randn(2, 1, 4, 4)
        before = ours(x, True)
        ours.real_label.fill_(0.9)
        after = ours(x, True)
    assert torch.allclose(before, ((x - 1.0) ** 2).mean())
    assert torch.allclose(after, ((x - 0.9) ** 2).mean())


def test_compiled_loss_honours_the_labels():
    ours = fastp2p.GANLoss("vanilla")
    with torch.no_grad():
        ours.real_label.fill_(0.9)
    compiled = torch.compile(ours, backend="eager", fullgraph=True)
    x = torch.randn(2, 1, 4, 4)
    expected = ReferenceGANLoss("vanilla", 0.9)(x, True)
    assert torch.allclose(compiled(x, True), expected)


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
