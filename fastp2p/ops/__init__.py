"""Autograd ops and the one place that picks a backend (triton | cuda | cpp | reference) per call.

So far it holds the reference meaning of the fused ops (``norm_act_reference``, ``dropout_rng``),
which the kernels and the C++ backend are tested against; the public modules in fastp2p.nn still
run the reference networks' own math.
"""
