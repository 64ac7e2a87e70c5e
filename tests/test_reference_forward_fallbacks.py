"""Networks the fused forwards cannot reproduce run the modules' own forward (fastp2p.nn.fused
``unet_supported`` / ``sequential_supported``): convolutions whose weight is parametrized
(``torch.nn.utils.parametrizations.spectral_norm`` / ``weight_norm``, the hook-based
``torch.nn.utils.spectral_norm``) or any parametrized layer, and module trees with a forward
hook or pre-hook on an inner module (or a global forward hook), or, where a gradient is wanted, a
backward hook, which the fused forwards, calling no submodule, would never fire. Each is checked
against the reference module with the same weights and the same parametrizations or hooks:
outputs, gradients, and what every hook saw. Also a BatchNorm left with only one of its
affine weight and bias (the other set to None: torch's norm takes it, the fused ops take both or
neither; they raised ValueError).
"""
import copy
import gc
import weakref

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_forward_hook
from torch.nn.utils import parametrizations, parametrize, spectral_norm

import fastp2p
import fastp2p.nn.discriminators
import fastp2p.nn.unet
from fastp2p import reference
from helpers.network_checks import network_pair, random_images
from helpers.tolerances import FP32_NETWORK, assert_close


class _Doubled(nn.Module):
    def forward(self, weight):
        return 2 * weight


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


PARAMETRIZATIONS = {
    "spectral_norm hook": lambda net: [spectral_norm(m) for m in _convs(net)],
    "parametrizations.spectral_norm": lambda net: [parametrizations.spectral_norm(m)
                                                   for m in _convs(net)],
    "parametrizations.weight_norm": lambda net: [parametrizations.weight_norm(m)
                                                 for m in _convs(net)],
    "a parametrized BatchNorm weight": lambda net: [
        parametrize.register_parametrization(m, "weight", _Doubled())
        for m in net.modules() if isinstance(m, nn.BatchNorm2d)],
}


def _pair(network):
    """(fastp2p network, the reference module with the same weights, an input batch)."""
    torch.manual_seed(0)
    if network == "unet":
        ours = fastp2p.UNet(3, 3, 5, ngf=4, norm="batch")
        theirs = reference.UnetGenerator(3, 3, 5, 4, nn.BatchNorm2d)
        channels = 3
    else:
        ours = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2, norm="batch")
        theirs = reference.NLayerDiscriminator(6, 4, 2, nn.BatchNorm2d)
        channels = 6
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(2, channels, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return ours, theirs, x


def _forward_and_backward(net, x):
    x = x.clone().requires_grad_(True)
    out = net(x)
    out.square().mean().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    net.zero_grad()
    return out.detach(), x.grad, grads


def _assert_same_forward_and_backward(ours, theirs, x, what):
    out, x_grad, grads = _forward_and_backward(ours, x)
    expected_out, expected_x_grad, expected_grads = _forward_and_backward(theirs, x)
    assert_close(out, expected_out, FP32_NETWORK, f"{what}: output")
    assert_close(x_grad, expected_x_grad, FP32_NETWORK, f"{what}: input gradient")
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], FP32_NETWORK, f"{what}: {name} gradient")


@pytest.mark.parametrize("network", ["unet", "patchgan"])
@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_parametrized_layers_run_the_modules_own_forward(network, kind):
    ours, theirs, x = _pair(network)
    with torch.no_grad():  # a first forward: the module tree walked, folds and copies cached
        ours.eval()(x)
    for net in (ours, theirs):
        PARAMETRIZATIONS[kind](net)
    theirs.load_state_dict(ours.state_dict())  # the same power-iteration vectors
    for mode in ("train", "eval"):
        ours.train(mode == "train"), theirs.train(mode == "train")
        _assert_same_forward_and_backward(ours, theirs, x, f"{kind}, {mode}")
        with torch.no_grad():
            assert_close(ours(x), theirs(x), FP32_NETWORK, f"{kind}, {mode}, no_grad")


# Where a hook goes: (network, path of the submodule in both module trees).
HOOKED = [("unet", "model.model.1.model.1"),    # a convolution
          ("unet", "model.model.1.model.2"),    # a norm
          ("unet", "model.model.1"),            # a U-Net block
          ("unet", "model.model.1.model.3.model.3.model.3"),  # the innermost block
          ("patchgan", "model.2"),              # a convolution
          ("patchgan", "model.3"),              # a norm
          ("patchgan", "model")]                # the stack the fused forward runs
HOOKS = {
    "forward hook": lambda m, seen: m.register_forward_hook(
        lambda module, args, output: seen.append(output.detach().clone())),
    "forward pre-hook": lambda m, seen: m.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone())),
}
HOOK_CASES = [(kind, network, path) for kind in HOOKS for network, path in HOOKED]


@pytest.mark.parametrize("kind,network,path", HOOK_CASES)
def test_a_hook_on_an_inner_module_fires_and_sees_the_reference_tensors(kind, network, path):
    ours, theirs, x = _pair(network)
    seen = {"ours": [], "theirs": []}
    handles = [HOOKS[kind](net.get_submodule(path), seen[name])
               for name, net in (("ours", ours), ("theirs", theirs))]
    for mode in ("train", "eval"):
        ours.train(mode == "train"), theirs.train(mode == "train")
        _assert_same_forward_and_backward(ours, theirs, x, f"{kind} on {path}, {mode}")
    with torch.no_grad():  # CPU inference: folded norms, packed weights in the fused forward
        assert_close(ours(x), theirs(x), FP32_NETWORK, f"{kind} on {path}, no_grad")
    assert len(seen["ours"]) == len(seen["theirs"]) >= 2
    for got, expected in zip(seen["ours"], seen["theirs"]):
        assert_close(got, expected, FP32_NETWORK, f"what the {kind} on {path} saw")
    for handle in handles:
        handle.remove()


def test_a_global_forward_hook_sees_every_module_the_reference_calls():
    ours, theirs, x = _pair("unet")
    seen = []
    handle = register_module_forward_hook(
        lambda module, args, output: seen.append(output.detach().clone()))
    try:
        with torch.no_grad():
            out = ours.eval()(x)
            ours_seen, seen[:] = list(seen), []
            expected = theirs.eval()(x)
    finally:
        handle.remove()
    assert_close(out, expected, FP32_NETWORK, "output")
    assert len(ours_seen) == len(seen) > 1
    for got, want in zip(ours_seen, seen):
        assert_close(got, want, FP32_NETWORK, "what the global hook saw")


def test_a_hook_added_after_the_walk_is_seen_and_the_fused_forward_is_back_once_it_is_removed(
        monkeypatch):
    ours, _, x = _pair("unet")
    fused_calls = []
    fused_forward = fastp2p.nn.unet.unet_forward
    monkeypatch.setattr(fastp2p.nn.unet, "unet_forward",
                        lambda *args: fused_calls.append(1) or fused_forward(*args))
    ours(x)  # the module tree walked with no hook
    assert fused_calls == [1]
    fired = []
    handle = ours.get_submodule("model.model.1.model.2").register_forward_hook(
        lambda *_: fired.append(1))
    ours(x)
    assert fused_calls == [1] and fired == [1]
    handle.remove()
    ours(x)
    assert fused_calls == [1, 1] and fired == [1]
    own_hook = ours.register_forward_hook(lambda *_: fired.append(2))  # run by its __call__
    ours(x)
    assert fused_calls == [1, 1, 1] and fired == [1, 2]
    own_hook.remove()


def test_the_fused_discriminator_forward_is_back_once_the_parametrization_is_removed(
        monkeypatch):
    ours, theirs, x = _pair("patchgan")
    plain = copy.deepcopy(theirs)  # the reference without it, for after the removal
    fused_calls = []
    fused_forward = fastp2p.nn.discriminators.sequential_forward
    monkeypatch.setattr(fastp2p.nn.discriminators, "sequential_forward",
                        lambda *args: fused_calls.append(1) or fused_forward(*args))
    conv = ours.model[2]
    parametrizations.weight_norm(conv)
    theirs.model[2] = copy.deepcopy(conv)
    _assert_same_forward_and_backward(ours, theirs, x, "weight_norm")
    assert fused_calls == []
    parametrize.remove_parametrizations(conv, "weight")  # registers no module anywhere
    with torch.no_grad():
        plain.model[2].weight.copy_(conv.weight)
    _assert_same_forward_and_backward(ours, plain, x, "after removing it")
    assert fused_calls == [1]


def test_a_network_whose_hook_refers_to_it_is_freed():
    """The walk is kept on the network, so a hook closure pointing back at it makes a cycle the
    collector frees (a global cache holding the hook dicts would keep it alive)."""
    ours, _, x = _pair("unet")
    ours.model.model[1].register_forward_hook(lambda *_, network=ours: None)
    with torch.no_grad():
        ours(x)
    alive = weakref.ref(ours)
    del ours
    gc.collect()
    assert alive() is None


BACKWARD_HOOKS = {
    "full backward hook": lambda m, seen: m.register_full_backward_hook(
        lambda module, grad_input, grad_output: seen.append(grad_output[0].detach().clone())),
    "full backward pre-hook": lambda m, seen: m.register_full_backward_pre_hook(
        lambda module, grad_output: seen.append(grad_output[0].detach().clone())),
}
BACKWARD_HOOK_CASES = [(kind, network, path) for kind in BACKWARD_HOOKS
                       for network, path in HOOKED]


def _outcome(net, x):
    """``_forward_and_backward``'s results, or the exception it raised."""
    try:
        return _forward_and_backward(net, x)
    except RuntimeError as error:
        return error


@pytest.mark.parametrize("kind,network,path", BACKWARD_HOOK_CASES)
def test_a_backward_hook_on_an_inner_module_behaves_as_on_the_reference(kind, network, path):
    """It fires with the reference's gradients, or, where torch refuses it on the reference (a
    full backward hook on a module whose output a later in-place activation modifies), the same
    error is raised: the fused forward, calling no submodule, used to skip it silently."""
    ours, theirs, x = _pair(network)
    seen = {"ours": [], "theirs": []}
    for name, net in (("ours", ours), ("theirs", theirs)):
        BACKWARD_HOOKS[kind](net.get_submodule(path), seen[name])
    for mode in ("train", "eval"):
        ours.train(mode == "train"), theirs.train(mode == "train")
        got, expected = _outcome(ours, x), _outcome(theirs, x)
        if isinstance(expected, RuntimeError):
            assert type(got) is type(expected), f"{kind} on {path}, {mode}: {expected}"
            continue
        for a, b, what in zip(got, expected, ("output", "input gradient")):
            assert_close(a, b, FP32_NETWORK, f"{kind} on {path}, {mode}: {what}")
    assert len(seen["ours"]) == len(seen["theirs"])
    for got, expected in zip(seen["ours"], seen["theirs"]):
        assert_close(got, expected, FP32_NETWORK, f"what the {kind} on {path} saw")
    with torch.no_grad():  # no gradient, no backward hook to fire: the fused forward runs
        assert_close(ours(x), theirs(x), FP32_NETWORK, f"{kind} on {path}, no_grad")


@pytest.mark.parametrize("network", ["unet", "patchgan"])
def test_a_global_backward_hook_behaves_as_on_the_reference(network):
    """torch refuses a global full backward hook on these networks (their in-place activations
    modify hooked outputs); the fused forward used to run without calling it at all."""
    ours, theirs, x = _pair(network)
    outcomes, seen = {}, {"ours": [], "theirs": []}
    for name, net in (("ours", ours), ("theirs", theirs)):
        handle = torch.nn.modules.module.register_module_full_backward_pre_hook(
            lambda module, grad_output, seen=seen[name]: seen.append(type(module).__name__))
        try:
            outcomes[name] = _outcome(net, x)
        finally:
            handle.remove()
    assert isinstance(outcomes["theirs"], RuntimeError)
    assert type(outcomes["ours"]) is type(outcomes["theirs"])
    assert seen["ours"] == seen["theirs"]


@pytest.mark.parametrize("kind", ["unet", "patch"])
@pytest.mark.parametrize("dropped", ["weight", "bias"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_a_batchnorm_with_half_its_affine_pair_runs_as_the_reference(kind, dropped, train):
    ours, theirs = network_pair(kind)
    for net in (ours, theirs):
        net.train(train)
        setattr(next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d)), dropped, None)
    x = random_images(32)
    outputs, grads = [], []
    for net in (ours, theirs):
        x_grad = x.clone().requires_grad_()
        out = net(x_grad)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        outputs.append(out)
        grads.append([x_grad.grad] + [p.grad for p in net.parameters()])
    assert_close(outputs[0], outputs[1], FP32_NETWORK)
    for mine, expected in zip(*grads):
        assert_close(mine, expected, FP32_NETWORK)


@pytest.mark.parametrize("kind", ["patch", "pixel"])
@pytest.mark.parametrize("norm", ["instance", "none", "batch"])
def test_an_unbatched_image_is_taken_where_the_reference_takes_it(kind, norm):
    """torch's conv and instance-norm layers take one (C, H, W) image, so the reference
    discriminators do with instance or no norm (and raise with BatchNorm2d)."""
    ours, theirs = network_pair(kind, reference.get_norm_layer(norm))
    image = random_images(32)[0]
    if norm == "batch":
        for net in (ours, theirs):
            with pytest.raises(ValueError, match="expected 4D input"):
                net(image)
        return
    outputs, grads = [], []
    for net in (ours, theirs):
        image_grad = image.clone().requires_grad_()
        out = net(image_grad)
        out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
        outputs.append(out)
        grads.append([image_grad.grad] + [p.grad for p in net.parameters()])
    assert outputs[0].shape == outputs[1].shape and outputs[0].dim() == 3
    assert_close(outputs[0], outputs[1], FP32_NETWORK)
    for mine, expected in zip(*grads):
        assert_close(mine, expected, FP32_NETWORK)


def test_an_unbatched_image_with_the_wrong_channels_is_named():
    ours, _ = network_pair("patch")
    with pytest.raises(ValueError, match="expects 3 input channels, got 4"):
        ours(torch.rand(4, 32, 32))
