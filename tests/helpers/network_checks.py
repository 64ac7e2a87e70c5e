"""Whole-network checks shared by the network tests: a fastp2p network vs the reference module in
float64 (output, input gradient, every parameter gradient, the buffers they share, DESIGN §5),
the reference's Dropout drawing fastp2p's counter-based masks, NaN-poisoned allocations and a
count of the fused convolution's launches; the tiniest network of each kind, and a whole-module
pickle round trip."""
import copy
import functools
import io

import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.ops.dropout_rng import dropout_keep_mask
from helpers.tolerances import FP32_NETWORK, assert_close


# The tiniest network of each kind, by its class's name: (its build, taking the norm factory
# and other options as the constructor does, and the shape of an input it takes).
TINY_NETWORKS = {
    "UNet": (functools.partial(fastp2p.UNet, 3, 3, 5, 4), (1, 3, 32, 32)),
    "PatchDiscriminator": (functools.partial(fastp2p.PatchDiscriminator, 6, 4, 2), (1, 6, 32, 32)),
    "PixelDiscriminator": (functools.partial(fastp2p.PixelDiscriminator, 6, 4), (1, 6, 16, 16)),
}


def eval_unet_with_statistics():
    """A tiny U-Net in eval mode, seeded, whose batch norms hold running statistics that make
    folding them into the convolutions matter (neither 0 nor 1)."""
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, ngf=8).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2)
    return net


def saved_and_loaded(module):
    """``module`` pickled whole by torch.save and read back by torch.load."""
    saved = io.BytesIO()
    torch.save(module, saved)
    saved.seek(0)
    return torch.load(saved, weights_only=False)


def unet_pair(norm, num_downs=5, use_dropout=False, ngf=4):
    """(fastp2p.UNet, the reference UnetGenerator in float64) with the same initial weights;
    num_downs 5 is the smallest U-Net the reference builds."""
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.UnetGenerator(
        3, 3, num_downs, ngf, reference.get_norm_layer(norm), use_dropout))
    ours = fastp2p.UNet(3, 3, num_downs, ngf, norm=norm, use_dropout=use_dropout)
    ours.load_state_dict(theirs.state_dict())
    return ours, copy.deepcopy(theirs).double()


def discriminator_pairs(norm):
    """[(name, fastp2p discriminator, the reference one in float64)] for the PatchGAN and the
    PixelGAN, each pair with the same initial weights."""
    torch.manual_seed(0)
    pairs = []
    for ours_cls, ref_cls, kwargs in [
            (fastp2p.PatchDiscriminator, reference.NLayerDiscriminator, dict(ndf=4, n_layers=3)),
            (fastp2p.PixelDiscriminator, reference.PixelDiscriminator, dict(ndf=4))]:
        theirs = reference.init_weights(ref_cls(6, norm_layer=reference.get_norm_layer(norm),
                                                **kwargs))
        ours = ours_cls(6, norm=norm, **kwargs)
        ours.load_state_dict(theirs.state_dict())
        pairs.append((ours_cls.__name__, ours, copy.deepcopy(theirs).double()))
    return pairs


def network_pair(kind, norm_layer=None, output_nc=3, num_downs=5):
    """(fastp2p network, reference network) of ``kind`` ("unet", "patch" or "pixel"), the
    reference's batch norm unless ``norm_layer`` is given, with the same random weights:
    torch's default initialization, whose signal survives an eval forward through every level
    (pix2pix's N(0, 0.02) shrinks it so much that a wrong slope at level 2 moved the output by
    < 1e-4). ``num_downs``: the U-Net's levels."""
    torch.manual_seed(0)
    norm_layer = norm_layer or reference.get_norm_layer("batch")
    if kind == "unet":
        theirs = reference.UnetGenerator(3, output_nc, num_downs, 4, norm_layer)
        ours = fastp2p.UNet(3, output_nc, num_downs, 4, norm_layer=norm_layer)
    elif kind == "patch":
        theirs = reference.NLayerDiscriminator(3, 4, 2, norm_layer)
        ours = fastp2p.PatchDiscriminator(3, 4, 2, norm_layer=norm_layer)
    else:
        theirs = reference.PixelDiscriminator(3, 4, norm_layer)
        ours = fastp2p.PixelDiscriminator(3, 4, norm_layer=norm_layer)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def random_images(size, batch=2):
    """A (batch, 3, size, size) batch in [-1, 1), the same on every call."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


class SameMaskDropout(nn.Module):
    """The reference's Dropout position, drawing fastp2p's mask from a shared counter."""

    def __init__(self, p, counter):
        super().__init__()
        self.p, self.counter = p, counter

    def forward(self, x):
        if not self.training:
            return x
        keep = dropout_keep_mask(tuple(x.shape), self.p, self.counter["seed"],
                                 self.counter["offset"], device=x.device)
        self.counter["offset"] += x.numel()
        return torch.where(keep, x / (1 - self.p), torch.zeros_like(x))


def with_same_masks(net, seed, offset):
    """``net`` with every nn.Dropout replaced by a SameMaskDropout starting at (seed, offset)."""
    counter = {"seed": seed, "offset": offset}
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Dropout):
                setattr(module, name, SameMaskDropout(child.p, counter))
    return net


def analytically_zero(expected: torch.Tensor) -> bool:
    """Conv biases right before an InstanceNorm: their exact gradient is 0."""
    return expected.norm().item() < 1e-10


def compare_networks(ours, theirs64, x, train, what, bound=FP32_NETWORK):
    """Run both on x (theirs in float64), backpropagate the same random weighting of the
    output, and assert DESIGN §5's bound on output, input gradient, every parameter gradient
    (exactly-zero ones: their noise within the bound times the largest gradient) and the
    buffers both have."""
    ours.train(train)
    theirs64.train(train)
    x_ours = x.clone().requires_grad_()
    x_ref = x.double().requires_grad_()
    out = ours(x_ours)
    expected = theirs64(x_ref)
    weight = (torch.rand(expected.shape, generator=torch.Generator().manual_seed(9),
                         dtype=torch.float64) * 2 - 1).to(expected.device)
    (out.double() * weight).sum().backward()
    (expected * weight).sum().backward()
    assert_close(out, expected, bound, f"{what} output")
    assert_close(x_ours.grad, x_ref.grad, bound, f"{what} grad input")
    ref_params = dict(theirs64.named_parameters())
    # Exactly-zero gradients hold only rounding noise: bound it by the largest gradient.
    noise_bound = bound * max(p.grad.abs().max().item() for p in ref_params.values())
    for name, p in ours.named_parameters():
        e = ref_params[name].grad
        if analytically_zero(e):
            assert p.grad.abs().max().item() <= noise_bound, f"{what} grad {name}"
        else:
            assert_close(p.grad, e, bound, f"{what} grad {name}")
    ref_buffers = dict(theirs64.named_buffers())
    for name, b in ours.named_buffers():
        if name in ref_buffers:
            assert_close(b, ref_buffers[name], bound, f"{what} buffer {name}")


def poison_allocations(monkeypatch):
    """torch.empty and Tensor.new_empty hand out NaN: an element a kernel leaves unwritten
    reaches the results."""
    empty, new_empty = torch.empty, torch.Tensor.new_empty

    def poisoned(t):
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poisoned(empty(*a, **k)))
    monkeypatch.setattr(torch.Tensor, "new_empty",
                        lambda self, *a, **k: poisoned(new_empty(self, *a, **k)))


def count_fused_convs(monkeypatch, kernels):
    """The number of fused forward launches of the backend module ``kernels`` so far, as
    calls[0]."""
    calls, launcher = [0], kernels.conv_fused_fwd

    def counted(*args, **kwargs):
        calls[0] += 1
        return launcher(*args, **kwargs)

    monkeypatch.setattr(kernels, "conv_fused_fwd", counted)
    return calls


def randomize_batchnorms(net, seed):
    """Running statistics and affine parameters far from the defaults (0, 1), so that a fold that
    ignored any of them would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.2)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return net
