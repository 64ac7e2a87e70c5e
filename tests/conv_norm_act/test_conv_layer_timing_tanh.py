"""benchmarks/conv_layer_timing.py times the U-Net's output conv with the network's Tanh on both
sides (torch.tanh after cuDNN's conv, the epilogue's tanh in the fused one), as
fastp2p.nn.unet_conv runs each, so a measured choice for that layer weighs the launches the
epilogue saves; no other layer gets one. CPU, float32, Triton interpreter, a tiny layer."""
import pytest
import torch

from helpers.benchmark_scripts import load_benchmark_script
from helpers.tolerances import FP32_SINGLE_OP, assert_close
from helpers.triton_interpreter import KERNELS

TIMING = load_benchmark_script("conv_layer_timing")
TABLE = load_benchmark_script("conv_choice_table")
UNET = TABLE.unet_layers(ngf=2, num_downs=5, side=32)
PATCHGAN = TABLE.patchgan_layers(ndf=2, n_layers=3, side=32)


def test_only_the_unet_output_conv_ends_in_tanh():
    assert [layer[0] for layer in UNET + PATCHGAN if TIMING._ends_in_tanh(layer)] == ["unet.up0"]


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
@pytest.mark.parametrize("provider", ["_cudnn", "_fused"])
def test_both_providers_of_the_output_conv_apply_the_tanh(monkeypatch, provider):
    """Each provider's output is tanh of what it gives without the tanh (the two providers
    compute different norms from their random inputs: each is compared with itself)."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    layer = UNET[-1]
    xs, coeffs, weight, bias = TIMING._layer_inputs(layer, 1, "batch", torch.device("cpu"),
                                                    torch.float32)
    weight = weight * 20  # pre-tanh outputs of order 1: the tanh's curved part
    make = getattr(TIMING, provider)
    with_tanh = make(layer, "batch", coeffs, weight, bias)(*xs)[0]
    monkeypatch.setattr(TIMING, "_ends_in_tanh", lambda layer: False)
    without = make(layer, "batch", coeffs, weight, bias)(*xs)[0]
    assert (1 - with_tanh ** 2).mean() < 0.9
    assert_close(with_tanh, torch.tanh(without.double()), FP32_SINGLE_OP, provider)
