"""Networks converted with ``.bfloat16()`` / ``.half()`` on the CPU (their norm weights and
running statistics in half precision, read through float32 copies), on every CPU backend: output
and input gradient within DESIGN §5's half-precision rule against the float64 reference, or no
worse than 1.5x (gradients: 2x, see below) the reference module's own error in the same dtype.
(The C++ backend's copies were once freed before its kernel read them: relative errors of 0.45
to 1e11, NaN in eval with a gradient; the reference backend mixed float32 inputs with
half-precision running statistics.)"""
import copy

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from helpers.tolerances import BF16_NETWORK, BF16_VS_AUTOCAST, relative_error

# The input gradients of these tiny networks in bf16 are 3.5e-2 to 2.0e-1 from float64 for both
# fastp2p and torch, and their ratio moves between 0.67 and 1.55 with the input's seed (the
# Triton backend through the interpreter, PatchGAN, 2026-12-02): above DESIGN's 1.5 for
# autocast, so the gradients get 2x; the failures this guards against were 10x to 1e13x.
GRADIENT_VS_TORCH = 2.0


def _networks(name):
    torch.manual_seed(0)
    if name == "unet":
        ours = fastp2p.UNet(3, 3, 5, ngf=8, norm="batch")
        theirs = reference.UnetGenerator(3, 3, 5, 8, nn.BatchNorm2d)
        shape = (2, 3, 32, 32)
    else:
        ours = fastp2p.PatchDiscriminator(6, ndf=8, n_layers=2, norm="batch")
        theirs = reference.NLayerDiscriminator(6, 8, 2, nn.BatchNorm2d)
        shape = (2, 6, 32, 32)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs, torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _output_and_input_gradient(net, x):
    x = x.clone().requires_grad_(True)
    out = net(x)
    out.backward(torch.ones_like(out))
    return out.detach(), x.grad


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["unet", "patchgan"])
def test_half_precision_modules_match_the_reference(backend, name, dtype, mode):
    ours, theirs, x = _networks(name)
    exact = _output_and_input_gradient(copy.deepcopy(theirs).double().train(mode == "train"),
                                       x.double())
    ours_half = _output_and_input_gradient(ours.to(dtype).train(mode == "train"), x.to(dtype))
    theirs_half = _output_and_input_gradient(theirs.to(dtype).train(mode == "train"), x.to(dtype))
    for what, got, torch_own, want, ratio in zip(
            ("output", "input gradient"), ours_half, theirs_half, exact,
            (BF16_VS_AUTOCAST, GRADIENT_VS_TORCH)):
        error, own = relative_error(got, want), relative_error(torch_own, want)
        assert error <= max(BF16_NETWORK, ratio * own), (
            f"{backend}: {name} {dtype} {mode} {what}: relative error {error:.3e} "
            f"(torch's own {own:.3e})")
