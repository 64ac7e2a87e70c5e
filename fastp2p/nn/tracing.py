"""How the drop-in networks meet torch's program capturers (torch.fx, TorchScript, torch.compile,
torch.export): each either records the reference forward's torch ops, or is refused in one
line; none reaches the fused launchers with proxies or fake tensors."""
import torch
from torch.fx._symbolic_trace import is_fx_tracing


def fx_tracing() -> bool:
    """Whether ``torch.fx.symbolic_trace`` (FX graph-mode quantization's ``prepare_fx``, say) is
    tracing: its proxies pass no input check and reach no kernel, so the networks give it the
    reference forward, which it records op by op, as it does for the reference module."""
    return is_fx_tracing()


def compiler_tracing() -> bool:
    """Whether torch.compile or torch.export is tracing this call."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


class RefusesScripting:
    """``torch.jit.script`` of a drop-in network raises one clear error instead of failing deep
    inside (the forward dispatches to fused kernels, which TorchScript cannot compile)."""

    def __prepare_scriptable__(self):
        name = type(self).__name__
        raise RuntimeError(f"torch.jit.script cannot compile fastp2p.{name} (its forward calls "
                           "fused kernels); use torch.jit.trace, torch.compile or "
                           "torch.export, or script the reference module "
                           f"(fastp2p.reference) loaded with this {name}'s state_dict")
