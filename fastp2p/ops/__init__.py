"""Autograd ops and the one place that picks a backend (triton | cuda | cpp | reference) per call.

Empty until the fused kernels land: the public modules in fastp2p.nn still run the reference
math from fastp2p.reference.
"""
