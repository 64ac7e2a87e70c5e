"""Triton kernels, installed as ``fastp2p.kernels``: @triton.jit functions and thin launchers.

No nn.Module and no autograd here; fastp2p.ops wraps these. Importing this package must not
touch CUDA, so the kernels can run through the Triton interpreter on a CPU.
"""
