"""Inputs the reference networks take and fastp2p refused: an empty batch (the reference returns
an empty output, its backward runs, and a training BatchNorm still counts the batch) and a
Dropout with p = 1 (the reference zeroes that half of the decoder's concatenation; the fused op
takes p < 1). Both now run the reference forward; against the reference module."""
import copy

import pytest
import torch
import torch.nn as nn

from fastp2p import reference
from helpers.network_checks import network_pair, unet_pair
from helpers.tolerances import FP32_NETWORK, assert_close


def _batch_counts(net):
    return [m.num_batches_tracked.item() for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("kind", ["unet", "patch", "pixel"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_an_empty_batch_gives_the_references_empty_output_and_gradients(kind, norm, train):
    ours, theirs = network_pair(kind, reference.get_norm_layer(norm))
    for net in (ours, theirs):
        net.train(train)
    outputs, grads = [], []
    for net in (ours, theirs):
        x = torch.randn(0, 3, 32, 32, requires_grad=True)
        out = net(x)
        out.sum().backward()
        outputs.append(out)
        grads.append([x.grad] + [p.grad for p in net.parameters()])
    (out, expected), (ours_grads, their_grads) = outputs, grads
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert out.stride() == expected.stride()
    for mine, theirs_grad in zip(ours_grads, their_grads):
        assert (mine is None) == (theirs_grad is None)
        if mine is not None:
            assert mine.shape == theirs_grad.shape and torch.equal(mine, theirs_grad)
    assert _batch_counts(ours) == _batch_counts(theirs)
    buffers = dict(ours.named_buffers())
    for name, expected_buffer in theirs.named_buffers():
        assert torch.equal(buffers[name], expected_buffer), name


def test_an_empty_batch_then_a_full_one_runs_fused_again():
    ours, theirs = network_pair("unet")
    ours.eval(), theirs.eval()
    assert ours(torch.empty(0, 3, 32, 32)).shape == (0, 3, 32, 32)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert_close(ours(x), copy.deepcopy(theirs).double()(x.double()), FP32_NETWORK, "after")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("p", [1.0, 0.0])
def test_dropout_probability_one_zeroes_as_the_reference(train, p):
    ours, theirs64 = unet_pair("batch", num_downs=6, use_dropout=True)
    for net in (ours, theirs64):
        net.train(train)
        for module in net.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    x64 = x.double().requires_grad_()
    x = x.requires_grad_()
    out, expected = ours(x), theirs64(x64)
    assert_close(out, expected, FP32_NETWORK, "output")
    grad = torch.rand(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out.backward(grad.float())
    expected.backward(grad)
    assert_close(x.grad, x64.grad, FP32_NETWORK, "input gradient")
    params = dict(ours.named_parameters())
    for name, theirs_param in theirs64.named_parameters():
        assert_close(params[name].grad, theirs_param.grad, FP32_NETWORK, name)


def test_dropout_probability_above_one_fails_as_in_the_reference():
    ours, theirs64 = unet_pair("instance", num_downs=6, use_dropout=True)
    for net in (ours, theirs64):
        for module in net.modules():
            if isinstance(module, nn.Dropout):
                module.p = 1.5
    for net, dtype in ((theirs64, torch.float64), (ours, torch.float32)):
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
            net(torch.rand(1, 3, 64, 64, dtype=dtype))
