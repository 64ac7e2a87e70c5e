"""fastp2p.UNet with dropout under torch.utils.checkpoint: checkpointing recomputes the forward
in the backward and needs the same masks; the fused forward's own dropout counter would have
moved on (fastp2p.nn.recomputation). Against the reference module run without checkpointing,
torch's generator seeded alike, so both draw the same masks. The U-Nets with dropout have 6
levels (64x64): the reference puts its Dropouts in the num_downs - 5 middle levels, so a 5-level
one has none, and the masks would be tested by nothing."""
import copy

import pytest
import torch
import torch.utils.checkpoint as checkpointing

from fastp2p import reference
from helpers.network_checks import random_images, unet_pair
from helpers.tolerances import FP32_NETWORK, assert_close


DROPOUT_LEVELS = 6


def _gradients(net, x, run):
    x = x.clone().requires_grad_()
    torch.manual_seed(7)
    out = run(net, x)
    out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
    return out.detach(), [x.grad] + [p.grad for p in net.parameters()]


def _plain(net, x):
    return net(x)


def _checkpointed(net, x):
    return checkpointing.checkpoint(net, x, use_reentrant=False)


def _reference_float32(ours):
    theirs = reference.UnetGenerator(3, 3, DROPOUT_LEVELS, 4, reference.get_norm_layer("batch"),
                                     True)
    assert any(isinstance(module, torch.nn.Dropout) for module in theirs.modules())
    theirs.load_state_dict(ours.state_dict())
    return theirs


def test_non_reentrant_checkpoint_gives_the_gradients_of_the_same_masks():
    ours, _ = unet_pair("batch", num_downs=DROPOUT_LEVELS, use_dropout=True)
    ours_before, theirs = copy.deepcopy(ours), _reference_float32(ours)
    x = random_images(64)
    out, grads = _gradients(ours, x, _checkpointed)
    expected_out, expected_grads = _gradients(theirs, x, _plain)
    assert_close(out, expected_out, FP32_NETWORK)
    for got, expected in zip(grads, expected_grads):
        assert_close(got, expected, FP32_NETWORK)
    # The recomputation updates the running statistics a second time, as it does the
    # reference module's under checkpointing.
    checkpointed_reference = _reference_float32(ours_before)
    _gradients(checkpointed_reference, x, _checkpointed)
    expected_buffers = dict(checkpointed_reference.named_buffers())
    for name, buffer in ours.named_buffers():
        if name != "dropout_rng":
            assert torch.equal(buffer, expected_buffers[name]), name


def test_reentrant_checkpoint_is_refused_in_the_backward_not_answered_wrong():
    ours, _ = unet_pair("batch", num_downs=DROPOUT_LEVELS, use_dropout=True)
    x = random_images(64).requires_grad_()
    out = checkpointing.checkpoint(ours, x, use_reentrant=True)
    with pytest.raises(RuntimeError, match="use_reentrant=False"):
        out.sum().backward()


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_without_dropout_checkpointing_keeps_the_fused_forward(train, monkeypatch):
    ours, _ = unet_pair("batch", use_dropout=False)
    ours.train(train)
    reference_calls = []
    original = reference.UnetGenerator.forward
    monkeypatch.setattr(reference.UnetGenerator, "forward",
                        lambda self, x: reference_calls.append(1) or original(self, x))
    plain_out, plain_grads = _gradients(copy.deepcopy(ours), random_images(32), _plain)
    out, grads = _gradients(ours, random_images(32), _checkpointed)
    assert not reference_calls
    assert torch.equal(out, plain_out)
    for got, expected in zip(grads, plain_grads):
        assert torch.equal(got, expected)
