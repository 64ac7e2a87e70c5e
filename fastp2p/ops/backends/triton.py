"""The Triton backend: the launchers of fastp2p.kernels under the contract's names.

The launchers themselves live beside their kernels (kernels/<op>.py); this adapter only names
them and says what the backend can run.
"""
import sys

import torch

from fastp2p.kernels.adam import adam_programs, adam_step
from fastp2p.kernels.augment import augment_pairs
from fastp2p.kernels.conv_fused import conv_fused_dgrad, conv_fused_fwd
from fastp2p.kernels.conv_fused_wgrad import conv_fused_bias_grad, conv_fused_wgrad
from fastp2p.kernels.conv_stats_finish import conv_stats_finish
from fastp2p.kernels.losses import gan_loss_fwd, l1_loss_fwd
from fastp2p.kernels.norm_act import norm_act_bwd, norm_act_fwd
from fastp2p.kernels.step_losses import d_step_losses_fwd, g_step_losses_fwd


def _built_by_interpreter() -> bool:
    """Whether every kernel of fastp2p.kernels imported so far (all that the launchers above
    run) was built by the Triton interpreter: TRITON_INTERPRET=1 when its module was imported,
    which may have been before this one (a kernel module imported without it runs compiled,
    CUDA only, whatever the variable says now)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction
    kernels = [value for name, module in list(sys.modules.items())
               if name.startswith("fastp2p.kernels.") and module is not None
               for value in vars(module).values()
               if isinstance(value, (JITFunction, InterpretedFunction))]
    return bool(kernels) and all(isinstance(k, InterpretedFunction) for k in kernels)


# Whether the kernels run CPU tensors (the registry asks; interpreter_on says whether the
# variable is set now).
INTERPRETED = _built_by_interpreter()

NAME = "triton"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # statistics and math in float32

__all__ = ["DTYPES", "INTERPRETED", "NAME",
           "adam_programs", "adam_step", "augment_pairs", "available", "conv_fused_bias_grad",
           "conv_fused_dgrad", "conv_fused_fwd", "conv_fused_wgrad", "conv_stats_finish",
           "d_step_losses_fwd", "g_step_losses_fwd", "gan_loss_fwd", "l1_loss_fwd",
           "norm_act_bwd", "norm_act_fwd"]


def available() -> bool:
    return True
