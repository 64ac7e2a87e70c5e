"""Where ``Pix2PixEngine(master_weights=True)`` cannot run, said in one line before anything is
built. Apart from ``master_weights_adam``, whose op runs a Triton kernel: a machine without
Triton must get this line, not an ImportError."""
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from fastp2p.ops.backends import interpreter_on


def check_master_weights_device(device: torch.device, *nets: nn.Module) -> None:
    """Raise a one-line ValueError where MasterWeightsAdam cannot run: its kernel needs a CUDA
    device (or CPU tensors under TRITON_INTERPRET=1, as the tests run it) and Triton, and it
    replaces the parameters that DistributedDataParallel's gradient buckets point at."""
    if not (device.type == "cuda" or (device.type == "cpu" and interpreter_on())):
        raise ValueError(f"master_weights=True needs the networks on a CUDA device, they are on "
                         f"{device}; use master_weights=False")
    if any(isinstance(net, DistributedDataParallel) for net in nets):
        raise ValueError("master_weights=True is not supported with DistributedDataParallel; "
                         "use master_weights=False for multi-process training")
    try:
        import triton  # noqa: F401 (its kernel's import, made here to say what is missing)
    except ImportError:
        raise ValueError("master_weights=True runs a Triton kernel and triton is not installed: "
                         "pip install 'fastp2p[triton]', or use master_weights=False") from None
