"""Autograd ops and the one place that picks a backend (triton | cpp | reference) per call
(fastp2p/ops/README.md: how to add an op or a backend).

- ``norm_act`` / ``norm_act_concat`` / ``norm_act_into``: fused norm + activation + dropout
  (+ zero-copy skip concatenation); ``gan_loss`` / ``l1_loss``: loss and gradient in one pass;
  ``step_losses``: a training step's D / G losses and gradients in one fused pass each
  (``d_step_losses``, ``g_step_losses``, their ``*_and_grads`` forms, ``LossTally``).
- ``conv_transpose.conv_transpose2d(module, x)``: the decoder's transposed convolution, as GEMM +
  C++ col2im in CPU float32 inference, else the module itself.
- ``backends``: every backend behind one contract (``backends/contract.py``);
  ``backend_name_for(device)`` says which runs (``FASTP2P_BACKEND`` forces one).
- ``definitions``: dtypes, the names of norms / activations / GAN modes, memory formats.
- ``norm_act_reference`` / ``dropout_rng``: the meaning of the fused ops, the tests' oracle.
"""
from fastp2p.ops.backends import backend_for, backend_name_for
from fastp2p.ops.losses import gan_loss, l1_loss
from fastp2p.ops.norm_act import activations_in_torch, norm_act, norm_act_concat, norm_act_into
from fastp2p.ops.step_losses import d_step_losses, g_step_losses

__all__ = ["activations_in_torch", "backend_for", "backend_name_for", "d_step_losses", "g_step_losses", "gan_loss",
           "l1_loss", "norm_act", "norm_act_concat", "norm_act_into"]
