"""Shared pieces of the fastp2p._C tests: the backend (skipping when it was not built) and the
float64 oracle of the norm-act op (forward through norm_act_reference, backward by autograd
through norm_act_math)."""
import pytest
import torch

from fastp2p.ops.backends import cpp as cpp_backend
from fastp2p.ops.norm_act_reference import write_norm_act as reference_fwd
from fastp2p.ops.norm_act_reference import norm_act_math

requires_extension = pytest.mark.skipif(
    not cpp_backend.available(), reason=f"fastp2p._C not built: {cpp_backend.unavailable_reason()}")

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def poisoned(shape, dtype, layout, device="cpu"):
    return torch.full(shape, float("nan"), dtype=dtype, device=device).to(
        memory_format=LAYOUTS[layout])


def make_inputs(shape, *, affine, norm, dtype, layout, seed=0, device="cpu"):
    """Random x (mean 0.3, not centred, so the statistics matter), affine and running stats."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = (torch.randn(shape, generator=gen) * 1.7 + 0.3).to(dtype).to(device)
    x = x.to(memory_format=LAYOUTS[layout])
    weight = (torch.rand(c, generator=gen) + 0.5).to(device) if affine else None
    bias = (torch.randn(c, generator=gen) * 0.5).to(device) if affine else None
    running = (None, None)
    if norm == "batch":
        running = ((torch.randn(c, generator=gen) * 0.2).to(device),
                   (torch.rand(c, generator=gen) + 0.5).to(device))
    return x, weight, bias, running


def case_id(case):
    """Test id of a (norm, training, activation, affine, dropout_p[, settings]) case; settings:
    the launcher arguments that differ from torch's defaults (momentum, eps, slope)."""
    norm, training, activation, affine, p, *settings = case
    others = "".join(f"-{name}{value}" for name, value in dict(*settings).items())
    return (f"{norm}-{'train' if training else 'eval'}-{activation}-"
            f"{'affine' if affine else 'plain'}-p{p}{others}")


def shape_id(shape):
    return "N{}-C{}-H{}-W{}".format(*shape)


def double(t):
    return None if t is None else t.detach().double()


def oracle_backward(x, weight, bias, running, grad_out, **kw):
    """(grad_x, grad_weight, grad_bias) in float64 by autograd through norm_act_math."""
    x64 = x.detach().double().requires_grad_()
    params = [t.detach().double().requires_grad_() if t is not None else None
              for t in (weight, bias)]
    running64 = [double(t) for t in running]
    y = norm_act_math(x64, params[0], params[1], *running64, **kw)
    inputs = [x64] + [p for p in params if p is not None]
    grads = torch.autograd.grad(y, inputs, grad_out.double())
    return (grads[0], (grads[1] if weight is not None else None),
            (grads[2] if weight is not None else None))


__all__ = ["cpp_backend", "reference_fwd", "requires_extension", "poisoned", "make_inputs",
           "case_id", "shape_id", "double", "oracle_backward", "LAYOUTS"]
