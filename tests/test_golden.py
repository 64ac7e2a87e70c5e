"""Both the reference definitions and the public modules reproduce the reference implementation's
golden outputs, gradients and buffer updates (../shared/reference, tolerances of its README)."""
import pytest
import torch

import fastp2p
from fastp2p import reference
from helpers.tolerances import GOLDEN_OUTPUT, assert_close

UNET_CASES = {"batch": "golden_unet_ngf8.pt", "instance": "golden_unet_ngf8_instance.pt"}


def _reference_unet(norm):
    return reference.UnetGenerator(3, 3, 8, ngf=8, norm_layer=reference.get_norm_layer(norm))


def _fastp2p_unet(norm):
    return fastp2p.UNet(3, 3, 8, ngf=8, norm=norm)


def _reference_patchgan():
    return reference.NLayerDiscriminator(6, ndf=8, n_layers=3,
                                         norm_layer=reference.get_norm_layer("batch"))


def _fastp2p_patchgan():
    return fastp2p.PatchDiscriminator(6, ndf=8, n_layers=3, norm="batch")


def _check_against_golden(net, case):
    net.load_state_dict(case["state_dict"])
    net.train()
    x = case["input"].clone().requires_grad_(True)
    out = net(x)
    # README: outputs within about 1e-5 absolute; the contract is 1e-5 relative. Check both.
    assert (out - case["out_train"]).abs().max() < 1e-5
    assert_close(out, case["out_train"], GOLDEN_OUTPUT, "out_train")
    (out * case["loss_weight"]).sum().backward()
    grad_scale = case["grad_input"].abs().max()
    assert (x.grad - case["grad_input"]).abs().max() <= 1e-4 * grad_scale, "grad_input"
    zero_grads = set(case["meta"]["analytically_zero_grad_params"])
    params = dict(net.named_parameters())
    assert set(params) == set(case["grad_params"])
    for name, expected in case["grad_params"].items():
        actual = params[name].grad
        if name in zero_grads:
            assert actual.abs().max() <= 1e-2, name
        else:
            assert (actual - expected).abs().max() <= 1e-4 * expected.abs().max(), name
    buffers = dict(net.named_buffers())
    for name, expected in case["buffers_after_train_forward"].items():
        if expected.is_floating_point():
            bound = 1e-5 * max(1.0, expected.abs().max())
            assert (buffers[name] - expected).abs().max() <= bound, name
        else:
            assert torch.equal(buffers[name], expected), name
    net.eval()
    with torch.no_grad():
        out_eval = net(case["input"])
    assert (out_eval - case["out_eval"]).abs().max() < 1e-5
    if case["out_eval"].norm() > 0:
        assert_close(out_eval, case["out_eval"], GOLDEN_OUTPUT, "out_eval")


@pytest.mark.parametrize("norm", sorted(UNET_CASES))
@pytest.mark.parametrize("build", [_reference_unet, _fastp2p_unet], ids=["reference", "fastp2p"])
def test_unet_matches_golden(golden, build, norm):
    _check_against_golden(build(norm), golden(UNET_CASES[norm]))


@pytest.mark.parametrize("build", [_reference_patchgan, _fastp2p_patchgan],
                         ids=["reference", "fastp2p"])
def test_patchgan_matches_golden(golden, build):
    _check_against_golden(build(), golden("golden_patchgan_ndf8.pt"))


@pytest.mark.parametrize("norm", sorted(UNET_CASES))
@pytest.mark.parametrize("build", [_reference_unet, _fastp2p_unet], ids=["reference", "fastp2p"])
def test_seeded_construction_and_init_reproduce_golden_weights(golden, build, norm):
    """Same module order, same RNG use: seed 0 + init_weights gives the golden state bitwise."""
    case = golden(UNET_CASES[norm])
    torch.manual_seed(case["meta"]["model_seed"])
    net = fastp2p.init_weights(build(norm), "normal", 0.02)
    state = net.state_dict()
    assert list(state) == list(case["state_dict"])
    for name, expected in case["state_dict"].items():
        assert torch.equal(state[name], expected), name


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgangp"])
@pytest.mark.parametrize("target", ["real", "fake"])
@pytest.mark.parametrize("loss_class", [reference.GANLoss, fastp2p.GANLoss],
                         ids=["reference", "fastp2p"])
def test_ganloss_matches_golden(golden, loss_class, mode, target):
    case = golden("golden_ganloss.pt")
    pred = case["pred"].clone().requires_grad_(True)
    loss = loss_class(mode)(pred, target == "real")
    loss.backward()
    expected = case[f"{mode}_{target}"]
    assert abs(loss.item() - expected.item()) <= 1e-6 * max(1.0, abs(expected.item()))
    assert_close(pred.grad, case[f"{mode}_{target}_grad_pred"], 1e-5, "grad_pred")
