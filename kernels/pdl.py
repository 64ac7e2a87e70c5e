"""Programmatic dependent launch (PDL) for the training step's small Triton kernels (issue 17).

With ``FASTP2P_PDL=1`` on a CUDA GPU of compute capability >= 9 (Hopper), a launcher adds
``launch_options(x)`` to its launch: the constexpr ``PDL`` and Triton's ``launch_pdl``. The GPU
may then start the kernel's programs before the kernel ahead of it in the stream has finished,
hiding the launch latency; each kernel's first statement, ``wait_for_previous_kernel(PDL)``,
blocks until that kernel has completed and its writes are visible (so nothing is read or
overwritten early), then lets the next kernel start launching in turn. Off (no variable, another
device, the interpreter) the launch is exactly what it was without PDL: no extra argument.

Off by default until a GPU run measures it faster (benchmark peer ``fastp2p-pdl``). The variable
is read here at every launch, not in ``fastp2p.ops.backends`` with the other settings, because
kernels/ may not import the ops layer.
"""
import functools

import torch
import triton
import triton.language as tl

from fastp2p.kernels.environment import PDL_ENV_VAR, getenv

_ON = {"PDL": True, "launch_pdl": True}
_OFF: dict = {}


def requested() -> bool:
    """Whether FASTP2P_PDL=1 now."""
    return getenv(PDL_ENV_VAR) == "1"


@functools.lru_cache(maxsize=None)
def _capable(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def launch_options(x: torch.Tensor) -> dict:
    """The extra launch arguments for a kernel over ``x``'s device: PDL on, or none at all."""
    if x.device.type != "cuda" or not requested():
        return _OFF
    return _ON if _capable(x.device.index) else _OFF


@triton.jit
def wait_for_previous_kernel(PDL: tl.constexpr):
    """With PDL: wait until the previous kernel in the stream has completed (its writes
    visible), then allow the next one to begin launching. Without: nothing."""
    if PDL:
        # The PTX instructions themselves rather than tl.extra.cuda.gdc_wait and
        # gdc_launch_dependents: Triton 3.4's versions of those (torch 2.8's pin) pass the IR
        # builder under a keyword its own compiler no longer uses and fail to compile. The
        # "=r" output is unused; an inline-asm element needs one.
        _grid_dependency_control("griddepcontrol.wait;")
        _grid_dependency_control("griddepcontrol.launch_dependents;")


@triton.jit
def _grid_dependency_control(INSTRUCTION: tl.constexpr):
    tl.inline_asm_elementwise(INSTRUCTION + " // $0 unused", "=r", [], dtype=tl.int32,
                              is_pure=False, pack=1)
