"""Finding NaN or Inf in weights, buffers and optimizer states before they are saved.

All tensors are reduced on their device (``torch._foreach_norm`` with ord=inf, fused on CUDA:
NaN or Inf anywhere in a tensor makes its max-abs non-finite, and a max never overflows) and
only one small vector, a flag per tensor, comes back to the host: one sync per check, which
happens only when a checkpoint is about to be written (it syncs anyway).
"""
import torch


def first_nonfinite(named_tensors) -> str | None:
    """The name of the first floating tensor of ``(name, tensor)`` pairs holding NaN or Inf."""
    named = [(name, t.detach()) for name, t in named_tensors
             if t.is_floating_point() and t.numel() > 0]
    if not named:
        return None
    names = [name for name, _ in named]
    by_device = {}
    for position, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(position)
    finite = [True] * len(named)
    for positions in by_device.values():
        maxima = torch._foreach_norm([named[p][1] for p in positions], float("inf"))
        # each maximum checked in its own dtype: cast to float32 first, a finite float64 value
        # past 3.4e38 was taken for Inf
        flags = torch.stack([torch.isfinite(m) for m in maxima]).tolist()
        for position, flag in zip(positions, flags):
            finite[position] = flag
    return next((name for name, flag in zip(names, finite) if not flag), None)


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
