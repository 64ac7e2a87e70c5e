"""Networks converted with ``.bfloat16()`` / ``.half()`` on the CPU (their norm weights and
running statistics in half precision, read through float32 copies), on every CPU backend, against
the float64 reference: the output within DESIGN §5's half-precision rule (2e-2 and no worse than
1.5x the reference module's own error in the same dtype); the input gradient and the parameters'
gradients within 2e-2 or no worse than 2x that error (see below).
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

# The gradients cannot meet DESIGN's rule (2e-2 and 1.5x). Measured 2026-12-02 with this input
# (seed 1): torch's own bf16 error of these tiny networks' input gradient is 3.6e-2 to 1.9e-1
# (fastp2p's 3.6e-2 to 2.5e-1; float16 U-Net in train: 4.7e-2, fastp2p's 5.2e-2), and of the
# U-Net's parameter gradients in bf16 train 2.8e-2 (fastp2p's 3.4e-2, reference and C++
# backends); the Triton backend's PatchGAN in bf16 eval is 1.54x torch's input-gradient error
# and 2.32x its parameter-gradient error (6.4e-3). Over input seeds 1-6 the input gradient's
# ratio moved between 0.43 and 3.34 (float16 U-Net in train; with seed 2 that is 2.1e-2 against
# torch's 6.4e-3, which this bound would refuse). So a gradient passes within 2e-2 or within 2x
# torch's own error; the failures this guards against were 10x to 1e13x. The outputs meet
# DESIGN's rule on every backend: at most 1.16e-2 and 1.44x torch's error with seed 1 (Triton,
# PatchGAN, bf16, eval; 1.25e-2 and 1.49x over seeds 1-6).
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


def _output_and_gradients(net, x):
    """The output, the input's gradient and every parameter's gradient (one vector, by name)."""
    x = x.clone().requires_grad_(True)
    out = net(x)
    out.backward(torch.ones_like(out))
    parameters = dict(net.named_parameters())
    return out.detach(), x.grad, torch.cat([parameters[name].grad.double().flatten()
                                            for name in sorted(parameters)])


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["unet", "patchgan"])
def test_half_precision_modules_match_the_reference(backend, name, dtype, mode):
    ours, theirs, x = _networks(name)
    exact = _output_and_gradients(copy.deepcopy(theirs).double().train(mode == "train"),
                                  x.double())
    ours_half = _output_and_gradients(ours.to(dtype).train(mode == "train"), x.to(dtype))
    theirs_half = _output_and_gradients(theirs.to(dtype).train(mode == "train"), x.to(dtype))
    for what, got, torch_own, want in zip(("output", "input gradient", "parameter gradients"),
                                          ours_half, theirs_half, exact):
        error, own = relative_error(got, want), relative_error(torch_own, want)
        message = (f"{backend}: {name} {dtype} {mode} {what}: relative error {error:.3e} "
                   f"(torch's own {own:.3e})")
        if what == "output":
            assert error <= BF16_NETWORK and error <= BF16_VS_AUTOCAST * own, message
        else:
            assert error <= max(BF16_NETWORK, GRADIENT_VS_TORCH * own), message
