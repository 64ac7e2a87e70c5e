"""The drop-in networks' fused forwards against the reference modules (float64, same weights,
random data, DESIGN section 5) where the module tree or its settings differ from the defaults
(reviewer's items 3, 4, 5 and 7):

- a norm layer the fused ops do not reproduce (GroupNorm), in the constructor or put in later:
  the reference forward runs;
- BatchNorm's choice of statistics as torch makes it: an eval BatchNorm normalizes with its
  running statistics whenever it has the buffers (``track_running_stats`` set to False after
  construction does not stop it), and updates them only in training while tracking;
- the U-Net's activations: every LeakyReLU slope read from the module that applies it, per call;
  an activation or output layer of another type, a negative slope or an extra layer: the
  reference forward;
- the output's memory format for inputs that are neither NCHW- nor channels-last-contiguous.
"""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn import fused
from helpers.network_checks import (compare_networks, network_pair, random_images,
                                    randomize_batchnorms)
from helpers.tolerances import FP32_NETWORK, assert_close

CL = torch.channels_last


def _fused_forward_runs(net) -> bool:
    if isinstance(net, fastp2p.UNet):
        return fused.unet_supported(net)
    return fused.sequential_supported(net.model if hasattr(net, "model") else net.net)


def _compare_without_gradient(ours, theirs64, x, train, what):
    ours.train(train)
    theirs64.train(train)
    with torch.no_grad():
        out, expected = ours(x), theirs64(x.double())
    assert_close(out, expected, FP32_NETWORK, f"{what} output")
    theirs_buffers = dict(theirs64.named_buffers())
    for name, b in ours.named_buffers():
        if name in theirs_buffers:
            assert_close(b, theirs_buffers[name], FP32_NETWORK, f"{what} buffer {name}")


def _compare(ours, theirs, x, mode, grad, what):
    """``ours`` vs ``theirs`` in float64 (a copy), in ``mode``, with or without a gradient
    (output, every gradient, the shared buffers)."""
    theirs64 = copy.deepcopy(theirs).double()
    if grad:
        compare_networks(ours, theirs64, x, mode == "train", what)
    else:
        _compare_without_gradient(ours, theirs64, x, mode == "train", what)


MODES = pytest.mark.parametrize("mode, grad", [("eval", False), ("eval", True), ("train", False),
                                               ("train", True)])
KINDS = pytest.mark.parametrize("kind", ["unet", "patch", "pixel"])


def _group_norm(channels):
    return nn.GroupNorm(1, channels)


@KINDS
@MODES
def test_a_group_norm_network_runs_the_reference_forward(kind, mode, grad):
    ours, theirs = network_pair(kind, _group_norm)
    assert not _fused_forward_runs(ours)
    _compare(ours, theirs, random_images(32), mode, grad, f"{kind} GroupNorm")


def test_a_group_norm_put_in_later_is_seen():
    ours, theirs = network_pair("unet")
    x = random_images(32)
    with torch.no_grad():
        ours.eval()(x)  # walked and supported
    for net in (ours, theirs):
        net.model.model[1].model[2] = nn.GroupNorm(2, 8)
        net.model.model[1].model[3].model[3].model[3].model[4] = nn.GroupNorm(4, 32)
    assert not fused.unet_supported(ours)
    _compare(ours, theirs, x, "eval", False, "GroupNorm put in")


def _untrack_after_construction(net):
    """track_running_stats=False on a tracking BatchNorm: the buffers stay."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False


def _untrack_with_cumulative_momentum(net):
    _untrack_after_construction(net)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None


def _track_without_buffers(net):
    """track_running_stats=True on a BatchNorm built without buffers: torch normalizes with
    the batch's statistics in eval too, and updates nothing."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = m.running_var = m.num_batches_tracked = None
            m.track_running_stats = True


BATCHNORM_EDITS = {"untracked after construction": _untrack_after_construction,
                   "untracked, momentum None": _untrack_with_cumulative_momentum,
                   "tracked without buffers": _track_without_buffers}


@KINDS
@MODES
@pytest.mark.parametrize("edit", BATCHNORM_EDITS)
def test_batchnorm_statistics_are_chosen_as_torch_chooses_them(kind, mode, grad, edit):
    """Running statistics far from (0, 1), so that the batch's statistics in their place (the
    reviewer measured a relative error of 1.67) or the running ones in place of the batch's
    would show; the buffers (and num_batches_tracked) must be left as torch leaves them."""
    ours, theirs = network_pair(kind)
    for net in (ours, theirs):
        randomize_batchnorms(net, 3)
        BATCHNORM_EDITS[edit](net)
    assert _fused_forward_runs(ours.train(mode == "train"))
    _compare(ours, theirs, random_images(32), mode, grad, f"{kind} {edit}")


def test_a_training_batchnorm_missing_one_buffer_runs_the_reference_forward():
    ours, _ = network_pair("unet")
    ours.model.model[1].model[2].num_batches_tracked = None
    assert not fused.unet_supported(ours)  # torch updates the statistics but counts nothing
    ours.eval()
    assert fused.unet_supported(ours)  # nothing to count


@KINDS
@pytest.mark.parametrize("buffer", ["running_mean", "running_var"])
def test_an_eval_batchnorm_missing_one_running_buffer_fails_as_in_torch(kind, buffer):
    ours, theirs = network_pair(kind)
    for net in (ours, theirs):
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                setattr(m, buffer, None)
        net.eval()
    x = random_images(32)
    with pytest.raises(RuntimeError, match="must be defined in evaluation mode"):
        theirs(x)
    with torch.no_grad(), pytest.raises((RuntimeError, ValueError), match="running_"):
        ours(x)


def _outer(net):
    return net.model.model


def _level(net, depth):
    """The ``model`` Sequential of the U-Net level ``depth`` below the outermost (1: its child)."""
    block = net.model
    for _ in range(depth):
        block = block.model[1] if block.outermost else block.model[3]
    return block.model


def _set(sequential, index, module):
    sequential[index] = module


# (edit applied to both networks, whether the fused forward still runs)
ACTIVATION_EDITS = {
    "output Tanh -> Identity": (lambda n: _set(_outer(n), 4, nn.Identity()), False),
    "up ReLU -> SiLU": (lambda n: _set(_level(n, 2), 4, nn.SiLU()), False),
    "outermost ReLU -> LeakyReLU": (lambda n: _set(_outer(n), 2, nn.LeakyReLU(0.1)), False),
    "innermost ReLU -> Identity": (lambda n: _set(_level(n, 4), 2, nn.Identity()), False),
    "down LeakyReLU -> ReLU": (lambda n: _set(_level(n, 3), 0, nn.ReLU(True)), False),
    "a norm position holding a ReLU": (lambda n: _set(_level(n, 2), 6, nn.ReLU()), False),
    "an appended layer": (lambda n: _level(n, 2).append(nn.Hardtanh()), False),
    "negative slope, in place": (
        lambda n: setattr(_level(n, 2)[0], "negative_slope", -0.3), False),
    "negative slope, not in place": (
        lambda n: _set(_level(n, 2), 0, nn.LeakyReLU(-0.3, inplace=False)), False),
    "slope 0.5 at level 1": (lambda n: setattr(_level(n, 1)[0], "negative_slope", 0.5), True),
    "slope 0.5 at level 2": (lambda n: setattr(_level(n, 2)[0], "negative_slope", 0.5), True),
    "slope 0.5 at level 3": (lambda n: setattr(_level(n, 3)[0], "negative_slope", 0.5), True),
    "slope 0.05 innermost": (lambda n: setattr(_level(n, 4)[0], "negative_slope", 0.05), True),
    "every slope different": (lambda n: [setattr(_level(n, d)[0], "negative_slope", 0.1 * d)
                                         for d in range(1, 5)], True),
}


@pytest.mark.parametrize("mode, grad", [("eval", False), ("train", True)])  # both fused paths
@pytest.mark.parametrize("edit", ACTIVATION_EDITS)
def test_unet_activations_are_the_modules(mode, grad, edit):
    """Each edit made after a first forward (the walk is cached then: a changed attribute
    registers nothing, a replaced module does)."""
    change, still_fused = ACTIVATION_EDITS[edit]
    ours, theirs = network_pair("unet")
    for net in (ours, theirs):
        randomize_batchnorms(net, 4)
    x = random_images(32)
    with torch.no_grad():
        ours.eval()(x)
    change(ours)
    change(theirs)
    assert fused.unet_supported(ours) == still_fused
    if grad and edit == "negative slope, in place":  # torch refuses, and so must fastp2p
        with pytest.raises(RuntimeError, match="negative slope"):
            _compare(ours, theirs, x, mode, grad, edit)
        return
    _compare(ours, theirs, x, mode, grad, edit)


INPUTS = {
    "nchw sliced": lambda: random_images(64)[..., ::2, ::2],
    "channels-last sliced": lambda: random_images(64).contiguous(memory_format=CL)[..., ::2, ::2],
    "nchw channel slice": lambda: torch.cat([random_images(32)] * 2, 1)[:, 1:4],
    "permuted": lambda: random_images(32).transpose(2, 3).contiguous().transpose(2, 3),
    "nchw": lambda: random_images(32),
    "channels-last": lambda: random_images(32).contiguous(memory_format=CL),
}


@KINDS
@pytest.mark.parametrize("module_format", [torch.contiguous_format, CL],
                         ids=["nchw_module", "channels_last_module"])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("layout", INPUTS)
def test_the_output_has_the_reference_strides(kind, module_format, grad, layout):
    ours, theirs = network_pair(kind)
    for net in (ours, theirs):
        randomize_batchnorms(net, 5).eval().to(memory_format=module_format)
    x = INPUTS[layout]()
    assert x.shape == (2, 3, 32, 32)
    with torch.set_grad_enabled(grad):
        out, expected = ours(x), theirs(x)
        expected64 = copy.deepcopy(theirs).double()(x.double())
    assert out.stride() == expected.stride(), f"{kind} {layout}"
    assert_close(out, expected64, FP32_NETWORK, f"{kind} {layout}")
