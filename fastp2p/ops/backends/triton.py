"""The Triton backend: the launchers of fastp2p.kernels under the contract's names.

The launchers themselves live beside their kernels (kernels/<op>.py); this adapter only names
them and says what the backend can run.
"""
import os

import torch

from fastp2p.kernels.conv_fused import conv_fused_dgrad, conv_fused_fwd
from fastp2p.kernels.conv_fused_wgrad import conv_fused_bias_grad, conv_fused_wgrad
from fastp2p.kernels.conv_stats_finish import conv_stats_finish
from fastp2p.kernels.losses import gan_loss_fwd, l1_loss_fwd
from fastp2p.kernels.norm_act import norm_act_bwd, norm_act_fwd
from fastp2p.kernels.step_losses import d_step_losses_fwd, g_step_losses_fwd

# Whether the kernels were built by the Triton interpreter (TRITON_INTERPRET=1 at import):
# only then can they run CPU tensors.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

NAME = "triton"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # statistics and math in float32

__all__ = ["DTYPES", "INTERPRETED", "NAME",
           "available", "conv_fused_bias_grad", "conv_fused_dgrad", "conv_fused_fwd",
           "conv_fused_wgrad", "conv_stats_finish", "d_step_losses_fwd", "g_step_losses_fwd",
           "gan_loss_fwd", "l1_loss_fwd", "norm_act_bwd", "norm_act_fwd"]


def available() -> bool:
    return True
