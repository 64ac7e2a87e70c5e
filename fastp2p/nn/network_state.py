"""Helpers over whole networks that the training step, the benchmark peers and the equivalence
checks share: freezing a network, finding the counter buffers its fused dropout draws from, and
the parameters whose true gradient is zero."""
import torch
import torch.nn as nn


def set_requires_grad(net: torch.nn.Module, requires_grad: bool) -> None:
    """Freeze or unfreeze a network, as the reference does around its generator step."""
    for param in net.parameters():
        param.requires_grad_(requires_grad)


def dropout_rng_modules(net: torch.nn.Module) -> dict:
    """{qualified name: module} of the modules whose fused dropout draws from a counter buffer
    (fastp2p.UNet's ``dropout_rng``: [seed, offset]; not in their state_dict)."""
    return {name: module for name, module in net.named_modules()
            if isinstance(getattr(module, "dropout_rng", None), torch.Tensor)}


def biases_an_instance_norm_cancels(net: torch.nn.Module) -> set:
    """Qualified names of the convolution biases that the InstanceNorm right after them removes
    again. Their true gradient is exactly zero, so Adam turns the rounding noise in it into
    +-lr steps that differ between any two implementations (and change no output): equivalence
    checks leave them out, as the golden data's README does."""
    cancelled = set()
    for prefix, module in net.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index, (layer, following) in enumerate(zip(module, list(module)[1:])):
            if (isinstance(following, nn.InstanceNorm2d)
                    and getattr(layer, "bias", None) is not None):
                cancelled.add(f"{prefix}.{index}.bias" if prefix else f"{index}.bias")
    return cancelled
