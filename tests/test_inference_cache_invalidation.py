"""The CPU inference caches (fastp2p.nn.folding: folded BatchNorm, packed or re-laid-out weights)
after the changes they used to miss or outlive: a step of torch's fused optimizers, which writes
the parameters without bumping their version counters (the caches' keys), and a conversion of
the network (``.double()``, ``.to()``), after which the entries held the old tensors alive.
"""
import gc
import weakref

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn import folding
from helpers.network_checks import randomize_batchnorms
from helpers.tolerances import FP32_NETWORK, assert_close, relative_error

FUSED_OPTIMIZERS = {
    "Adam": lambda params: torch.optim.Adam(params, lr=0.05, fused=True),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=0.05, fused=True),
    "SGD": lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9, fused=True),
}


def _image(batch=2, channels=3, size=32):
    return torch.rand(batch, channels, size, size,
                      generator=torch.Generator().manual_seed(3)) * 2 - 1


def _cached_entries(net):
    """The cache entries (folds and weight copies, the plain ones too) held for ``net``'s
    modules."""
    return [entry for m in net.modules() for cache in (folding._cache, folding._layout_cache)
            if m in cache for entry in cache[m].entries()]


def _eval_output(net, x):
    net.eval()
    with torch.no_grad():
        return net(x)


def _fresh_copy_output(net, x, **config):
    """What a module never run before computes with ``net``'s weights and statistics."""
    fresh = type(net)(**config)
    fresh.load_state_dict(net.state_dict())
    return _eval_output(fresh, x)


def _step(net, x, optimizer, train: bool):
    net.train(train)
    net(x).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("optimizer", FUSED_OPTIMIZERS)
def test_a_fused_optimizer_step_reaches_the_unets_weight_copies(optimizer):
    """InstanceNorm U-Net: no fold, but every CPU float32 inference runs cached copies of the
    weights (packed for oneDNN, or channels-last)."""
    config = dict(input_nc=3, output_nc=3, num_downs=5, ngf=4, norm="instance")
    torch.manual_seed(0)
    net, x = fastp2p.UNet(**config), _image()
    before = _eval_output(net, x)
    assert _cached_entries(net), "the eval forward should have cached weight copies"

    _step(net, x, FUSED_OPTIMIZERS[optimizer](net.parameters()), train=True)
    after, expected = _eval_output(net, x), _fresh_copy_output(net, x, **config)
    assert relative_error(before, expected) > 1e-3, "the step should have changed the output"
    assert_close(after, expected, FP32_NETWORK, f"U-Net after a fused {optimizer} step")


@pytest.mark.parametrize("optimizer", FUSED_OPTIMIZERS)
def test_a_fused_optimizer_step_reaches_the_discriminators_folds(optimizer):
    """Eval-mode BatchNorm PatchGAN fine-tuned with frozen statistics: its folds are cached and
    the step changes the convolutions and the norms' affine parameters they are built from."""
    config = dict(input_nc=6, ndf=4, n_layers=2, norm="batch")
    torch.manual_seed(0)
    net, x = randomize_batchnorms(fastp2p.PatchDiscriminator(**config), 5), _image(channels=6)
    before = _eval_output(net, x)
    assert any(m in folding._cache for m in net.modules()), "the BatchNorms should be folded"

    _step(net, x, FUSED_OPTIMIZERS[optimizer](net.parameters()), train=False)
    after, expected = _eval_output(net, x), _fresh_copy_output(net, x, **config)
    assert relative_error(before, expected) > 1e-3, "the step should have changed the output"
    assert_close(after, expected, FP32_NETWORK, f"PatchGAN after a fused {optimizer} step")


def test_a_fused_step_under_torch_compile_reaches_the_weight_copies():
    """The hook is traced into a compiled step (inductor) and its bumps still happen there."""
    config = dict(input_nc=3, output_nc=3, num_downs=5, ngf=4, norm="instance")
    torch.manual_seed(0)
    net, x = fastp2p.UNet(**config), _image()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05, fused=True)
    _step(net, x, optimizer, train=True)  # an eager step first: the state exists
    net.train()(x).square().mean().backward()
    _eval_output(net, x)  # cached copies of the weights as they are now
    torch.compile(lambda: optimizer.step())()  # inductor: its kernels bump no counter
    assert_close(_eval_output(net, x), _fresh_copy_output(net, x, **config), FP32_NETWORK,
                 "U-Net after a compiled fused Adam step")


def test_a_fused_step_bumps_only_watched_parameters_and_a_plain_step_nothing_more():
    """The hook bumps the counters of the parameters a cache keys on (see_fused_steps_on) after
    a fused step, and no other tensor's: a plain Adam's in-place update bumps each parameter's
    counter itself, the same for both."""
    watched, other = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))
    folding.see_fused_steps_on([watched])

    def bumps(optimizer):
        for p in (watched, other):
            p.grad = torch.randn(4)
        optimizer.step()  # the first step also creates the state
        versions = [watched._version, other._version]
        optimizer.step()
        return [watched._version - versions[0], other._version - versions[1]]

    own = bumps(torch.optim.Adam([watched, other], lr=0.1))
    assert own[0] == own[1] >= 1
    assert bumps(torch.optim.Adam([watched, other], lr=0.1, fused=True)) == [1, 0]


def _bn_unet():
    torch.manual_seed(0)
    return randomize_batchnorms(fastp2p.UNet(3, 3, 5, ngf=4, norm="batch"), 5)


def test_converting_the_network_drops_the_entries_that_hold_its_old_tensors():
    net = _bn_unet()
    _eval_output(net, _image())
    entries = _cached_entries(net)
    assert entries and any(m in folding._cache for m in net.modules())
    held = [weakref.ref(entry) for entry in entries]
    del entries

    net.double()
    gc.collect()
    assert _cached_entries(net) == []
    assert all(ref() is None for ref in held), "an entry (and the old tensors it held) lives on"


def test_a_conversion_that_replaces_nothing_keeps_the_entries():
    net = _bn_unet()
    x = _image()
    expected = _eval_output(net, x)
    entries = _cached_entries(net)
    net.to("cpu", torch.float32)  # where the network already is: the same tensors
    assert _cached_entries(net) == entries
    assert_close(_eval_output(net, x), expected, FP32_NETWORK, "after a no-op .to()")


def test_the_network_computes_right_after_a_round_trip_of_conversions():
    net, x = _bn_unet(), _image()
    _eval_output(net, x)
    net.double().float()
    expected = _fresh_copy_output(net, x, input_nc=3, output_nc=3, num_downs=5, ngf=4,
                                  norm="batch")
    assert_close(_eval_output(net, x), expected, FP32_NETWORK, "after .double().float()")
