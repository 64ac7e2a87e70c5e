"""The integer codes the kernels use for names: the one table of each (the Triton kernels take
them as ``tl.constexpr``; the C++/CUDA kernels in csrc/ use the same numbers). fastp2p.ops
re-exports them with its other op-wide definitions (fastp2p/ops/definitions.py).
"""
NORM_CODES = {"instance": 1, "batch": 2, "none": 0}
ACTIVATION_CODES = {"none": 0, "relu": 1, "leaky_relu": 2}
GAN_MODE_CODES = {"vanilla": 0, "lsgan": 1, "wgangp": 2}
