"""Eval-mode BatchNorm folded into the convolutions (fastp2p.nn.folding): whole networks against
the float64 reference modules (DESIGN section 5), the cache following every change of a weight or
a running statistic, and the paths that must not fold (train mode, InstanceNorm, gradients).

Uninitialised memory is poisoned: the ``poisoned`` fixture turns on PyTorch's deterministic mode,
whose ``torch.empty`` fills floating tensors with NaN, so an element a fused op fails to write
(e.g. its slice of the concatenation buffer) makes the output NaN, which never passes.
"""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn import folding
from helpers.network_checks import compare_networks, randomize_batchnorms
from helpers.tolerances import (BF16_NETWORK, BF16_VS_AUTOCAST, FP32_NETWORK, FP32_SINGLE_OP,
                                assert_close, relative_error)
from helpers.triton_interpreter import FAST_CPU_BACKEND_PARAMS, REGISTRY_DEFAULT

# conftest's backend fixture, narrowed to the backends that run whole networks quickly
ON_FAST_BACKENDS = pytest.mark.parametrize("backend", FAST_CPU_BACKEND_PARAMS, indirect=True)


def _unet_pair(norm="batch", num_downs=6, use_dropout=True):
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.UnetGenerator(
        3, 3, num_downs, 8, reference.get_norm_layer(norm), use_dropout))
    if norm == "batch":
        randomize_batchnorms(theirs, 5)
    ours = fastp2p.UNet(3, 3, num_downs, 8, norm=norm, use_dropout=use_dropout)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _image(size=64, batch=2, channels=3, seed=1):
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed)) \
        * 2 - 1


def _reference_output(theirs, x, train=False):
    theirs64 = copy.deepcopy(theirs).double().train(train)
    with torch.no_grad():
        return theirs64(x.double())


def _folded_norms(net):
    return [m for m in net.modules() if m in folding._cache]


def _batchnorms(net):
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("grad_off", ["no_grad", "inference_mode", "no_param_requires_grad"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@ON_FAST_BACKENDS
def test_folded_unet_matches_float64_reference(backend, poisoned, layout, grad_off):
    ours, theirs = _unet_pair()
    ours.eval()
    x = _image()
    if layout == "nhwc":
        ours.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if grad_off == "no_grad":
        with torch.no_grad():
            out = ours(x)
    elif grad_off == "inference_mode":
        with torch.inference_mode():
            out = ours(x)
    else:
        ours.requires_grad_(False)
        out = ours(x)
        assert not out.requires_grad
    assert_close(out, _reference_output(theirs, x), FP32_NETWORK, "folded unet")
    assert set(_folded_norms(ours)) == set(_batchnorms(ours))  # every BatchNorm was folded
    if layout == "nhwc":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["patch", "pixel"])
@ON_FAST_BACKENDS
def test_folded_discriminators_match_float64_reference(backend, poisoned, name):
    torch.manual_seed(0)
    norm_layer = reference.get_norm_layer("batch")
    if name == "patch":
        theirs = reference.NLayerDiscriminator(6, ndf=8, n_layers=3, norm_layer=norm_layer)
        ours = fastp2p.PatchDiscriminator(6, ndf=8, n_layers=3, norm="batch")
    else:
        theirs = reference.PixelDiscriminator(6, ndf=8, norm_layer=norm_layer)
        ours = fastp2p.PixelDiscriminator(6, ndf=8, norm="batch")
    randomize_batchnorms(reference.init_weights(theirs), 6)
    ours.load_state_dict(theirs.state_dict())
    x = _image(channels=6, size=32)
    with torch.no_grad():
        out = ours.eval()(x)
    assert_close(out, _reference_output(theirs, x), FP32_NETWORK, name)
    assert set(_folded_norms(ours)) == set(_batchnorms(ours))


def test_fold_of_one_layer_is_the_conv_then_the_norm():
    """Single convolutions (and transposed ones) with eval BatchNorm, against float64."""
    gen = torch.Generator().manual_seed(2)
    for conv in (nn.Conv2d(5, 7, 4, 2, 1, bias=True), nn.ConvTranspose2d(5, 7, 4, 2, 1)):
        norm = randomize_batchnorms(nn.Sequential(nn.BatchNorm2d(7)), 3)[0].eval()
        x = torch.randn(2, 5, 6, 6, generator=gen)
        weight, bias = folding.fold_batchnorm(conv, norm)
        folded = folding.stand_in(conv, weight, bias)
        expected = copy.deepcopy(nn.Sequential(conv, norm)).double()(x.double())
        assert_close(folded(x), expected, FP32_SINGLE_OP, type(conv).__name__)


def test_a_bfloat16_fold_is_computed_in_float32_and_rounded_once():
    """A .bfloat16() network's fold: the float64 fold rounded to bfloat16, bit for bit (scale,
    product and shift computed in bfloat16 round several times: 1 to 2 ulps off). Seeded: a
    float32 and a float64 fold may round to two neighbours where one lies within ~1e-7 of a
    midpoint, which these weights have none of."""
    torch.manual_seed(0)
    for conv in (nn.Conv2d(5, 7, 4, 2, 1, bias=True), nn.ConvTranspose2d(5, 7, 4, 2, 1)):
        norm = randomize_batchnorms(nn.Sequential(nn.BatchNorm2d(7)), 3)[0].eval()
        weight, bias = folding.fold_batchnorm(conv.bfloat16(), norm.bfloat16())
        expected = folding.fold_batchnorm(copy.deepcopy(conv).double(),
                                          copy.deepcopy(norm).double())
        assert torch.equal(weight, expected[0].bfloat16()), type(conv).__name__
        assert torch.equal(bias, expected[1].bfloat16()), type(conv).__name__


def _assert_follows(ours, theirs, x, what):
    with torch.no_grad():
        out = ours(x)
    assert_close(out, _reference_output(theirs, x), FP32_NETWORK, what)


@ON_FAST_BACKENDS
def test_second_call_follows_in_place_changes(backend):
    ours, theirs = _unet_pair()
    ours.eval()
    x = _image()
    _assert_follows(ours, theirs, x, "first call")
    level = ours.model.model[1].model  # [LeakyReLU, conv, BatchNorm, submodule, ...]
    ref_level = theirs.model.model[1].model
    gen = torch.Generator().manual_seed(4)
    changes = [
        ("running_var", lambda m: m[2].running_var.mul_(2)),
        ("running_mean", lambda m: m[2].running_mean.add_(0.5)),
        ("norm weight", lambda m: m[2].weight.mul_(-1)),
        ("norm bias", lambda m: m[2].bias.add_(1)),
        ("conv weight", lambda m: m[1].weight.add_(
            torch.randn(m[1].weight.shape, generator=gen) * 0.05)),
        ("up norm running_var", lambda m: m[6].running_var.mul_(0.5)),
        ("up conv weight", lambda m: m[5].weight.mul_(1.5)),
    ]
    for what, change in changes:
        with torch.no_grad():
            change(level)
            change(ref_level) if what != "conv weight" else \
                ref_level[1].weight.copy_(level[1].weight)
        _assert_follows(ours, theirs, x, f"after changing the {what}")


@ON_FAST_BACKENDS
def test_changed_eps_and_load_state_dict_invalidate_the_cache(backend):
    ours, theirs = _unet_pair()
    ours.eval()
    x = _image()
    _assert_follows(ours, theirs, x, "first call")
    for ours_norm, ref_norm in zip(_batchnorms(ours), _batchnorms(theirs)):
        ours_norm.eps = ref_norm.eps = 0.5
    _assert_follows(ours, theirs, x, "after changing eps")
    other = randomize_batchnorms(copy.deepcopy(theirs), 11)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.1)
    ours.load_state_dict(other.state_dict())
    _assert_follows(ours, other, x, "after load_state_dict")


def test_moving_the_module_rebuilds_the_fold(monkeypatch):
    """.double() replaces every tensor (new addresses): the fold is rebuilt in float64 (the
    reference backend: the C++ kernels take no float64)."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    ours, theirs = _unet_pair()
    ours.eval()
    x = _image()
    _assert_follows(ours, theirs, x, "float32")
    ours.double()
    with torch.no_grad():
        out = ours(x.double())
    assert out.dtype == torch.float64
    assert_close(out, _reference_output(theirs, x), 1e-10, "after .double()")


@ON_FAST_BACKENDS
def test_folding_leaves_state_dict_and_parameters_alone(backend):
    ours, _ = _unet_pair()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    parameters = [id(p) for p in ours.parameters()]
    with torch.no_grad():
        ours.eval()(_image())
    after = ours.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert [id(p) for p in ours.parameters()] == parameters
    assert all(p.requires_grad for p in ours.parameters())


@pytest.mark.parametrize("case", ["train-batch", "eval-instance", "eval-with-grad"])
@ON_FAST_BACKENDS
def test_statistics_path_where_folding_does_not_apply(backend, case):
    """Train-mode BatchNorm (batch statistics, running stats updated), InstanceNorm, and any
    forward that records gradients keep the norm: nothing is folded, outputs and gradients as
    the reference's."""
    norm = "instance" if case == "eval-instance" else "batch"
    ours, theirs = _unet_pair(norm=norm, use_dropout=False)
    train = case == "train-batch"
    x = _image()
    if case == "eval-with-grad":
        with torch.no_grad():
            ours.eval()(x)  # a folded call first: its cache must not leak into the gradient path
    # (compare_networks bounds the conv biases before an InstanceNorm, whose exact gradient is
    # 0, by their noise against the largest gradient)
    compare_networks(ours, copy.deepcopy(theirs).double(), x, train, case)
    if case != "eval-with-grad":
        assert _folded_norms(ours) == []
    if case == "train-batch":
        with torch.no_grad():
            ours(x)
        assert _folded_norms(ours) == []  # train mode under no_grad: batch statistics too


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("backend", [*FAST_CPU_BACKEND_PARAMS, REGISTRY_DEFAULT], indirect=True)
def test_a_frozen_eval_unet_gives_its_input_a_gradient(backend, layout):
    """Frozen weights, eval mode, an input that needs a gradient (optimising an input through a
    trained generator, a perceptual loss): the call records autograd for the input alone, so the
    folded and packed forms, which record none, must not run. A check that looked at the
    parameters only ran them: the backward then raised "element 0 of tensors does not require
    grad"."""
    ours, theirs = _unet_pair(use_dropout=False)
    ours.eval().requires_grad_(False)
    theirs64 = copy.deepcopy(theirs).double().eval().requires_grad_(False)
    x = _image()
    if layout == "nhwc":
        ours.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    x32, x64 = x.clone().requires_grad_(), x.double().requires_grad_()
    out, expected = ours(x32), theirs64(x64)
    out.backward(grad)
    expected.backward(grad.double())
    assert_close(out, expected.detach(), FP32_NETWORK, "output")
    assert_close(x32.grad, x64.grad, FP32_NETWORK, "input gradient")


@ON_FAST_BACKENDS
def test_inference_tensors_are_not_cached_but_still_correct(backend):
    """Parameters created under inference_mode have no version counter to watch: no fold."""
    ours, theirs = _unet_pair()
    state = theirs.state_dict()
    with torch.inference_mode():
        ours = fastp2p.UNet(3, 3, 6, 8, norm="batch", use_dropout=True).eval()
        ours.load_state_dict(state)
        out = ours(_image())
    assert _folded_norms(ours) == []
    assert_close(out, _reference_output(theirs, _image()), FP32_NETWORK, "inference tensors")


@ON_FAST_BACKENDS
def test_the_check_per_call_reuses_the_fold(backend, monkeypatch):
    ours, _ = _unet_pair()
    ours.eval()
    calls = []
    original = folding.fold_batchnorm
    monkeypatch.setattr(folding, "fold_batchnorm",
                        lambda conv, norm: calls.append(norm) or original(conv, norm))
    with torch.no_grad():
        ours(_image())
        ours(_image(seed=2))
    assert len(calls) == len(_batchnorms(ours))  # built once, reused by the second call
    with torch.no_grad():
        _batchnorms(ours)[0].running_mean.add_(1)
        ours(_image())
    assert len(calls) == len(_batchnorms(ours)) + 1  # only the changed one is rebuilt


@ON_FAST_BACKENDS
def test_folding_disabled_keeps_the_statistics_path(backend):
    ours, theirs = _unet_pair()
    ours.eval()
    x = _image()
    with folding.folding_disabled(), torch.no_grad():
        out = ours(x)
    assert _folded_norms(ours) == []
    assert_close(out, _reference_output(theirs, x), FP32_NETWORK, "folding disabled")
    with torch.no_grad():
        ours(x)
    assert set(_folded_norms(ours)) == set(_batchnorms(ours))  # on again after the block


@ON_FAST_BACKENDS
def test_folded_unet_under_bf16_autocast_within_pytorchs_own_error(backend):
    """DESIGN section 5's bf16 rule for the folded path (weights folded in float32, then cast by
    autocast): within 2e-2 of float64 and no worse than 1.5x PyTorch's own autocast error, plus
    1e-3. Why the 1e-3: the fold rounds other numbers to bf16 than autocast does (the weights
    scaled by gamma / sigma, and a conv bias that carries BatchNorm's shift, which the reference
    applies in float32 after the conv), so its error is another draw of about the same size.
    Over 20 seeds of weights and inputs it was 0.83x to 1.60x autocast's (about 3e-3; here
    1.09x), so 1.5x alone fails some seeds (1 of the 20). 1e-3 covers
    the worst seed's excess over 1.5x (3.3e-4) three times; a wrong fold is off by far more
    (measured: the running mean left out 0.57, the norm's weight 0.29, the variance 10% off
    4.4e-2)."""
    ours, theirs = _unet_pair()
    ours.eval().to(memory_format=torch.channels_last)
    theirs32 = copy.deepcopy(theirs).eval().to(memory_format=torch.channels_last)
    x = _image().contiguous(memory_format=torch.channels_last)
    expected = _reference_output(theirs, x)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        out, autocast_out = ours(x), theirs32(x)
    assert set(_folded_norms(ours)) == set(_batchnorms(ours))
    error, autocast_error = relative_error(out, expected), relative_error(autocast_out, expected)
    assert error <= BF16_NETWORK
    assert error <= BF16_VS_AUTOCAST * autocast_error + 1e-3, (error, autocast_error)


@pytest.mark.parametrize("network", ["unet", "patch", "pixel"])
@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights_after_a_forward_is_followed(network, init_type):
    """fastp2p.init_weights writes in place where the cached (folded, packed) weights see it."""
    torch.manual_seed(0)
    net = {"unet": lambda: fastp2p.UNet(3, 3, 5, ngf=4),
           "patch": lambda: fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2),
           "pixel": lambda: fastp2p.PixelDiscriminator(6, ndf=4)}[network]().eval()
    x = torch.randn(1, 3 if network == "unet" else 6, 32, 32)
    with torch.no_grad():
        net(x)                                  # caches what the next eval call reuses
        fastp2p.init_weights(net, init_type, 0.02)
        fresh = copy.deepcopy(net)
        folding.forget_cached_weights(fresh)
        assert relative_error(net(x), fresh(x)) <= FP32_SINGLE_OP
