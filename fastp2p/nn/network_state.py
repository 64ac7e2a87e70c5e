"""Helpers over whole networks that the training step and the benchmark peers share: freezing a
network, and finding the counter buffers its fused dropout draws from."""
import torch


def set_requires_grad(net: torch.nn.Module, requires_grad: bool) -> None:
    """Freeze or unfreeze a network, as the reference does around its generator step."""
    for param in net.parameters():
        param.requires_grad_(requires_grad)


def dropout_rng_modules(net: torch.nn.Module) -> dict:
    """{qualified name: module} of the modules whose fused dropout draws from a counter buffer
    (fastp2p.UNet's ``dropout_rng``: [seed, offset]; not in their state_dict)."""
    return {name: module for name, module in net.named_modules()
            if isinstance(getattr(module, "dropout_rng", None), torch.Tensor)}
