"""How the drop-in networks meet torch's program capturers (torch.fx, TorchScript, torch.compile,
torch.export): each either records the reference forward's torch ops, or is refused in one
line; none reaches the fused launchers with proxies or fake tensors."""
import torch
import torch.fx._symbolic_trace as _fx_trace


def _tracing_flag_reader(symbolic_trace):
    """The function that reads ``symbolic_trace``'s (torch.fx._symbolic_trace's) tracing flag:
    a thread-local read by ``_get_is_fx_tracing`` from torch 2.14, a module global before (2.14
    removed ``_is_fx_tracing_flag``, so reading it failed every forward there)."""
    read = getattr(symbolic_trace, "_get_is_fx_tracing", None)
    return read if read is not None else lambda: symbolic_trace._is_fx_tracing_flag


_read_tracing_flag = _tracing_flag_reader(_fx_trace)


def fx_tracing() -> bool:
    """Whether ``torch.fx.symbolic_trace`` (FX graph-mode quantization's ``prepare_fx``, say) is
    tracing: its proxies pass no input check and reach no kernel, so the networks give it the
    reference forward, which it records op by op, as it does for the reference module. The
    flag ``is_fx_tracing()`` reads, without the warning that function logs once per process
    (it is also set under torch.export, which takes the reference forward too)."""
    return _read_tracing_flag()


def compiler_tracing() -> bool:
    """Whether torch.compile or torch.export is tracing this call (``is_exporting``: torch >=
    2.7; without it, export runs under ``is_compiling()`` anyway)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return torch.compiler.is_compiling() or (is_exporting is not None and is_exporting())


class RefusesScripting:
    """``torch.jit.script`` of a drop-in network raises one clear error instead of failing deep
    inside (the forward dispatches to fused kernels, which TorchScript cannot compile). It names
    torch.export first, then the TorchScript routes: torch deprecates TorchScript, and its
    ``torch.jit.trace`` warns so (a DeprecationWarning in 2.13, a FutureWarning in 2.14)."""

    def __prepare_scriptable__(self):
        name = type(self).__name__
        raise RuntimeError(f"torch.jit.script cannot compile fastp2p.{name} (its forward calls "
                           "fused kernels); use torch.export or torch.compile, which torch "
                           "advises in place of TorchScript (it deprecates it); for a "
                           "TorchScript module all the same, torch.jit.trace it, or script "
                           f"the reference module (fastp2p.reference) loaded with this {name}'s "
                           "state_dict")
