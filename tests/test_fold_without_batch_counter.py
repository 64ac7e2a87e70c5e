"""An eval BatchNorm whose ``num_batches_tracked`` was set to None still tracks running
statistics in training: torch's training forward updates them inside its kernel, bumping no
version counter, and without the batch counter nothing the fold cache keys on changes
(fastp2p.nn.folding). Such a norm is not folded, so an eval call after a training forward
follows the updated statistics: the cached fold of the call before gave 2.5e-2 relative error.
"""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn import folding
from helpers.network_checks import randomize_batchnorms
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import REGISTRY_DEFAULT


def _without_batch_counters(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.num_batches_tracked = None
    return net


def _image(seed):
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _eval_train_eval(ours, theirs, image, grad=False):
    """Eval call, training forward (updating the running statistics; with ``grad``, recording
    autograd as a training step does, which takes another route on the CPU), eval call: the
    last output of each network (``theirs``: float64)."""
    outputs = []
    for net, x in ((ours, image), (theirs, image.double())):
        net.eval()
        with torch.no_grad():
            net(x)
        net.train()
        with torch.set_grad_enabled(grad):
            net(x * 3 + 1)  # statistics far from the current running ones
        with torch.no_grad():
            outputs.append(net.eval()(x))
    return outputs


def test_unet_eval_follows_running_statistics_a_training_forward_updated():
    torch.manual_seed(0)
    theirs = randomize_batchnorms(reference.UnetGenerator(3, 3, 6, 8), 5)
    ours = fastp2p.UNet(3, 3, 6, 8)
    ours.load_state_dict(theirs.state_dict())
    _without_batch_counters(ours), _without_batch_counters(theirs)
    out, expected = _eval_train_eval(ours, copy.deepcopy(theirs).double(), _image(1))
    assert_close(out, expected, FP32_NETWORK, "eval after a training forward")
    assert not any(m in folding._cache for m in ours.modules())


def test_patch_discriminator_eval_follows_running_statistics_a_training_forward_updated():
    torch.manual_seed(0)
    theirs = randomize_batchnorms(reference.NLayerDiscriminator(3, 8, 3), 5)
    ours = fastp2p.PatchDiscriminator(3, 8, 3)
    ours.load_state_dict(theirs.state_dict())
    _without_batch_counters(ours), _without_batch_counters(theirs)
    out, expected = _eval_train_eval(ours, copy.deepcopy(theirs).double(), _image(2))
    assert_close(out, expected, FP32_NETWORK, "eval after a training forward")


def test_a_norm_with_its_batch_counter_is_still_folded():
    ours = fastp2p.UNet(3, 3, 6, 8).eval()
    with torch.no_grad():
        ours(_image(3))
    assert all(m in folding._cache for m in ours.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("backend", [REGISTRY_DEFAULT], indirect=True)
def test_unet_eval_after_a_training_forward_refolds_by_the_batch_counter(backend, grad):
    """With the counter (torch's default) the fold is cached, and the counter's bump is what
    shows the training forward: a fold keyed without it gave 6.5e-2 relative error after a
    forward recording autograd. That forward runs torch's batch norm (no version bump on the
    statistics) only as the registry picks by default (fastp2p.ops.norm_act_torch), not with
    the reference backend the suite forces elsewhere, so no backend is forced here."""
    torch.manual_seed(0)
    theirs = randomize_batchnorms(reference.UnetGenerator(3, 3, 6, 8), 5)
    ours = fastp2p.UNet(3, 3, 6, 8)
    ours.load_state_dict(theirs.state_dict())
    out, expected = _eval_train_eval(ours, copy.deepcopy(theirs).double(), _image(1), grad)
    assert_close(out, expected, FP32_NETWORK, "eval after a training forward")
    assert all(m in folding._cache for m in ours.modules() if isinstance(m, nn.BatchNorm2d))
