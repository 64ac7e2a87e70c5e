"""fastp2p.UNet-256 with every conv fused (FASTP2P_CONV=fused) on a GPU: float32 vs the reference
in float64 (DESIGN §5, 1e-4; the kernels' float32 dot is IEEE, no TF32) with dropout drawing the
same masks, and bf16 (weights and activations stored bf16; the fused op takes explicit dtypes,
not autocast): the output within 2e-2 of float64, and the output, the input gradient and every
parameter gradient no worse than 1.5x PyTorch's own bf16 autocast error plus the error of
storing the float64 value in bf16 (autocast keeps parameters and their gradients in float32)
plus 1e-3.
bf16 through the Triton interpreter is not meaningful (its tl.dot), hence GPU only."""
import copy

import pytest
import torch

import fastp2p
from fastp2p import reference
from helpers.forced_backend import force_backend
from helpers.network_checks import compare_networks, with_same_masks
from helpers.tolerances import BF16_NETWORK, BF16_VS_AUTOCAST, relative_error

pytestmark = pytest.mark.cuda


def _nets(norm, ngf, use_dropout=False):
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.UnetGenerator(
        3, 3, 8, ngf, reference.get_norm_layer(norm), use_dropout)).cuda()
    ours = fastp2p.UNet(3, 3, 8, ngf, norm=norm, use_dropout=use_dropout).cuda()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _input(batch=2):
    generator = torch.Generator(device="cuda").manual_seed(1)
    return (torch.rand(batch, 3, 256, 256, device="cuda", generator=generator) * 2 - 1
            ).contiguous(memory_format=torch.channels_last)


def test_gpu_fused_unet_fp32_with_dropout_matches_reference(monkeypatch):
    force_backend(monkeypatch, "triton")
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    ours, theirs = _nets("batch", 8, use_dropout=True)
    ours.set_dropout_rng(11, 0)
    theirs64 = with_same_masks(copy.deepcopy(theirs).double(), 11, 0)
    compare_networks(ours.to(memory_format=torch.channels_last), theirs64, _input(), True,
                     "unet256 fused fp32")


def _gradients(net, x, weight):
    """(output, input gradient, parameter gradients) of sum(out * weight)."""
    x = x.clone().requires_grad_()
    out = net(x)
    (out.double() * weight).sum().backward()
    return out, x.grad, [p.grad for p in net.parameters()]


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_gpu_fused_unet_bf16_within_autocast_error(monkeypatch, norm):
    """Forward output, input gradient and every parameter gradient: each no worse than 1.5x
    autocast's error on the same quantity, plus what storing it in bf16 costs by itself (the
    expected value rounded to bf16: autocast keeps float32 parameters and gradients) and 1e-3;
    the output also within 2e-2."""
    force_backend(monkeypatch, "triton")
    ours, theirs = _nets(norm, 32)
    x = _input()
    theirs64 = copy.deepcopy(theirs).double()
    weight = torch.rand(2, 3, 256, 256, device="cuda", dtype=torch.float64) * 2 - 1
    expected = _gradients(theirs64, x.double(), weight)
    autocast_net = copy.deepcopy(theirs).to(memory_format=torch.channels_last)
    with torch.autocast("cuda", torch.bfloat16):
        autocast = _gradients(autocast_net, x, weight)
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    bf16_net = ours.to(torch.bfloat16).to(memory_format=torch.channels_last)
    got = _gradients(bf16_net, x.to(torch.bfloat16), weight)
    assert relative_error(got[0], expected[0]) <= BF16_NETWORK
    pairs = [("output", got[0], autocast[0], expected[0]),
             ("grad input", got[1], autocast[1], expected[1])]
    pairs += [(f"grad {name}", g, a, e) for (name, _), g, a, e in
              zip(ours.named_parameters(), got[2], autocast[2], expected[2])
              if e.norm().item() > 1e-10]  # conv biases before an InstanceNorm: exactly 0
    for what, g, a, e in pairs:
        error, autocast_error = relative_error(g, e), relative_error(a, e)
        storage = relative_error(e.to(g.dtype), e)
        assert error <= BF16_VS_AUTOCAST * autocast_error + storage + 1e-3, (
            what, error, autocast_error, storage)
