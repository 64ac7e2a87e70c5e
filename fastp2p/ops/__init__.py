"""Autograd ops and the one place that picks a backend (triton | cpp | reference) per call
(fastp2p/ops/README.md: how to add an op or a backend).

- ``norm_act`` / ``norm_act_concat`` / ``norm_act_into``: fused norm + activation + dropout
  (+ zero-copy skip concatenation); ``gan_loss`` / ``l1_loss``: loss and gradient in one pass;
  ``step_losses``: a training step's D / G losses and gradients in one fused pass each
  (``d_step_losses``, ``g_step_losses``, their ``*_and_grads`` forms, ``LossTally``).
- ``conv_norm_act(sources, transforms, weight, ...)``: the fused convolution (the previous
  norm's scale / shift, activation and dropout applied while loading, this norm's statistics
  written by the epilogue; Triton only, used where ``backends/conv_choice.py`` says).
- ``conv_transpose2d(module, x)``: the decoder's transposed convolution; in CPU float32
  inference in the form measured fastest per layer shape, input size class and thread count
  (C++ GEMM + col2im, oneDNN's packed deconvolution or its four phases:
  ``conv_transpose.cpu_inference_form``, ``FASTP2P_CPU_DECONV`` fixes it), on a GPU with its
  output channels padded to a multiple of 8, else the module itself.
- ``backends``: every backend behind one contract (``backends/contract.py``);
  ``backend_name_for(device)`` says which runs (``FASTP2P_BACKEND`` forces one).
- ``definitions``: dtypes, the names of norms / activations / GAN modes, memory formats.
- ``norm_act_reference`` / ``dropout_rng``: the meaning of the fused ops, the tests' oracle.
"""
from fastp2p.ops.backends import backend_for, backend_name_for
# The op replaces its module's name here, as norm_act does (importlib.import_module reaches it).
from fastp2p.ops.conv_norm_act import conv_norm_act
from fastp2p.ops.conv_transpose import conv_transpose2d
from fastp2p.ops.losses import gan_loss, l1_loss
from fastp2p.ops.norm_act import activations_in_torch, norm_act, norm_act_concat, norm_act_into
from fastp2p.ops.step_losses import d_step_losses, g_step_losses

__all__ = ["activations_in_torch", "backend_for", "backend_name_for", "conv_norm_act",
           "conv_transpose2d", "d_step_losses", "g_step_losses", "gan_loss",
           "l1_loss", "norm_act", "norm_act_concat", "norm_act_into"]
