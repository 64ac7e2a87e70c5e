"""torch.jit.trace, torch.func transforms (vmap, grad, jvp) and forward-mode AD work on the
drop-in networks and GANLoss as on the reference modules: those calls run the reference forward
(fastp2p.nn.fused.reference_forward_wanted), whose ops they know. Values against the float64
reference; a traced module is checked on a second input, not the one it was traced with."""
import copy

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import functional_call, grad, jvp, vmap

import fastp2p
from fastp2p import reference
from helpers.network_checks import network_pair, random_images
from helpers.tolerances import FP32_NETWORK, FP32_SINGLE_OP, assert_close

KINDS = ["unet", "patch", "pixel"]


def _pair(kind, norm="batch", train=False):
    ours, theirs = network_pair(kind, reference.get_norm_layer(norm))
    theirs64 = copy.deepcopy(theirs).double()
    for net in (ours, theirs64):
        net.train(train)
    return ours, theirs64


def _images(seed, batch=2):
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("grad_mode", [False, True], ids=["no_grad", "grad"])
def test_jit_trace_gives_the_reference_output_on_another_input(kind, grad_mode):
    ours, theirs64 = _pair(kind)
    with torch.set_grad_enabled(grad_mode):
        traced = torch.jit.trace(ours, _images(1))  # check_trace: traced again and compared
        second = _images(2)
        assert_close(traced(second), theirs64(second.double()), FP32_NETWORK, f"{kind} traced")
    # the module itself is unchanged by the trace: still the fused forward
    assert_close(ours(second), theirs64(second.double()), FP32_NETWORK, f"{kind} after trace")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm,train", [("batch", False), ("instance", False),
                                        ("instance", True), ("none", False), ("none", True)])
def test_vmap_over_a_leading_dimension_matches_the_reference(kind, norm, train):
    ours, theirs64 = _pair(kind, norm, train)
    stacked = torch.stack([_images(1), _images(2)])  # (2 vmapped, batch 2, 3, 32, 32)
    out = vmap(ours)(stacked)
    expected = torch.stack([theirs64(x.double()) for x in stacked])
    assert_close(out, expected, FP32_NETWORK, f"{kind} {norm} vmap")


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_of_a_training_batchnorm_fails_as_the_references_does(kind):
    """torch's vmap refuses a training BatchNorm's in-place running statistics, for the
    reference module too: the same error, not a fastp2p one."""
    ours, theirs64 = _pair(kind, "batch", train=True)
    stacked = torch.stack([_images(1), _images(2)])
    for net, x in ((theirs64, stacked.double()), (ours, stacked)):
        with pytest.raises(RuntimeError, match="Batch norm got a batched tensor"):
            vmap(net)(x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_forward_mode_ad_gives_the_reference_tangent(kind, train):
    ours, theirs64 = _pair(kind, train=train)
    x, tangent = _images(1), _images(3)
    with forward_ad.dual_level():
        out = forward_ad.unpack_dual(ours(forward_ad.make_dual(x, tangent)))
        expected = forward_ad.unpack_dual(theirs64(forward_ad.make_dual(x.double(),
                                                                        tangent.double())))
    assert out.tangent is not None
    assert_close(out.primal, expected.primal, FP32_NETWORK, f"{kind} primal")
    assert_close(out.tangent, expected.tangent, FP32_NETWORK, f"{kind} tangent")


@pytest.mark.parametrize("kind", KINDS)
def test_func_jvp_and_grad_of_a_functional_call_match_the_reference(kind):
    ours, theirs64 = _pair(kind)
    x, tangent = _images(1), _images(3)
    _, out = jvp(ours, (x,), (tangent,))
    _, expected = jvp(theirs64, (x.double(),), (tangent.double(),))
    assert_close(out, expected, FP32_NETWORK, f"{kind} jvp")

    def loss(net, params, images):
        return functional_call(net, params, (images,)).square().mean()

    params = {k: v.detach() for k, v in ours.named_parameters()}
    params64 = {k: v.detach() for k, v in theirs64.named_parameters()}
    grads = grad(lambda p: loss(ours, p, x))(params)
    expected_grads = grad(lambda p: loss(theirs64, p, x.double()))(params64)
    for name, g in grads.items():
        assert_close(g, expected_grads[name], FP32_NETWORK, f"{kind} grad {name}")


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp"])
def test_gan_loss_under_forward_ad_and_vmap_matches_the_reference(mode):
    """Forward-mode AD through the fused loss gave no tangent at all (None), silently."""
    logits = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(4),
                         dtype=torch.float64).float()
    tangent = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    ours, theirs = fastp2p.GANLoss(mode), reference.GANLoss(mode).double()
    with forward_ad.dual_level():
        out = forward_ad.unpack_dual(ours(forward_ad.make_dual(logits, tangent), True))
        expected = forward_ad.unpack_dual(theirs(forward_ad.make_dual(logits.double(),
                                                                      tangent.double()), True))
    assert out.tangent is not None
    assert_close(out.primal, expected.primal, FP32_SINGLE_OP, f"{mode} primal")
    assert_close(out.tangent, expected.tangent, FP32_SINGLE_OP, f"{mode} tangent")
    batched = vmap(lambda p: ours(p, False))(logits)
    assert_close(batched, torch.stack([theirs(p.double(), False) for p in logits]),
                 FP32_SINGLE_OP, f"{mode} vmap")


def test_the_fused_forward_runs_again_after_a_transform(monkeypatch):
    """The checks are per call: outside a transform the network runs fused again."""
    import fastp2p.nn.unet as unet_module
    calls = []
    monkeypatch.setattr(unet_module, "unet_forward",
                        lambda net, x: calls.append(1) or unet_module.UnetGenerator.forward(
                            net, x))
    ours, _ = _pair("unet")
    with forward_ad.dual_level():
        ours(forward_ad.make_dual(random_images(32), random_images(32)))
    vmap(ours)(torch.stack([random_images(32)]))
    assert calls == []
    ours(random_images(32))
    assert calls == [1]
