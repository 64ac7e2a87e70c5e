"""Finding NaN or Inf in weights, buffers and optimizer states before they are saved: the
tensors of training (``training_tensors``) for ``first_nonfinite`` (fastp2p.nn.finite, where
checkpoint loading finds it too), which happens only when a checkpoint is about to be written
(it syncs anyway).
"""
import torch

from fastp2p.nn.finite import first_nonfinite

# first_nonfinite is re-exported: the train layer's modules import it from here
__all__ = ["first_nonfinite", "training_tensors"]


def training_tensors(networks: dict, optimizers: dict):
    """(name, tensor) of every parameter and buffer of ``networks`` ({"netG": module}) and every
    tensor of ``optimizers``' states ({"optimizer_G": (optimizer, its network)}), in that order."""
    for label, net in networks.items():
        for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
            yield f"{label}.{name}", tensor
    for label, (optimizer, net) in optimizers.items():
        names = {id(param): name for name, param in net.named_parameters()}
        for param, state in optimizer.state.items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    yield f"{label} {key} of {names.get(id(param), '?')}", value
