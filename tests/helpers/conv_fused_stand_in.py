"""Float64 stand-ins for the fused convolution's GEMM launchers (conv_fused_fwd, _dgrad, _wgrad):
the meaning of tests/helpers/conv_fused_reference.py computed in float64, each result stored in
the dtype the real kernel writes (y and grad_x in the sources' dtype, grad_weight and the
scale/shift gradients float32). For CPU tests of bf16 routing: the Triton interpreter's bf16
tl.dot is not meaningful, so the kernels' own bf16 numerics are the GPU tests' job (the
bias-gradient reduction, conv_fused_bias_grad, has no tl.dot: the real kernel runs). Every
forward records the dtypes it was handed and whether autocast was on.
"""
import torch

from fastp2p.kernels.conv_fused_types import TilePartials
from helpers.conv_fused_reference import conv_fused_reference, prologue

LAUNCHERS = ("conv_fused_fwd", "conv_fused_dgrad", "conv_fused_wgrad")


def _float64(transform):
    return transform._replace(
        scale=None if transform.scale is None else transform.scale.double(),
        shift=None if transform.shift is None else transform.shift.double())


def _per_channel(t):
    return t[:, :, None, None] if t.dim() == 2 else t[None, :, None, None]


def _stored(value64, dtype):
    return value64.to(dtype).contiguous(memory_format=torch.channels_last)


class ConvFusedStandIn:
    """Install with ``install(monkeypatch, backend_module)``; ``forwards`` lists a dict of
    dtypes per forward launch."""

    def __init__(self):
        self.forwards = []

    def install(self, monkeypatch, kernels):
        for name in LAUNCHERS:
            monkeypatch.setattr(kernels, name, getattr(self, name))

    def conv_fused_fwd(self, sources, transforms, weight, bias=None, *, stride, padding,
                       transposed=False, slope=0.2, partials=True, output_activation="none",
                       out=None):
        self.forwards.append(dict(
            sources=[s.dtype for s in sources], weight=weight.dtype,
            bias=None if bias is None else bias.dtype,
            scales=[t.scale.dtype for t in transforms if t.scale is not None]
            + [t.shift.dtype for t in transforms if t.shift is not None],
            autocast=torch.is_autocast_enabled(sources[0].device.type)))
        y64 = conv_fused_reference([s.double() for s in sources], [_float64(t) for t in transforms],
                                   weight.double(), None if bias is None else bias.double(),
                                   stride=stride, padding=padding, transposed=transposed,
                                   slope=slope)
        if output_activation == "tanh":
            y64 = torch.tanh(y64)
        y = _stored(y64, sources[0].dtype) if out is None else out.copy_(y64)
        if not partials:
            return y, None
        # one tile per image: (mean, M2, rows), merged by the real conv_stats_finish
        n, c, h, w = y64.shape
        mean = y64.mean((2, 3))
        m2 = ((y64 - mean[:, :, None, None]) ** 2).sum((2, 3))
        rows = torch.full((n, 1), float(h * w), dtype=torch.float32)
        return y, TilePartials(mean.float()[:, None], m2.float()[:, None], rows)

    @staticmethod
    def _grads(grad_y, weight64, x, transform, fold, stride, padding, transposed, slope):
        """float64 (grad_x, grad_scale, grad_shift, grad_weight) of this source's share of the
        convolution, with grad_y completed by ``fold`` as the kernels load it."""
        g = grad_y.double()
        if fold is not None and fold.tanh:
            g = g * (1 - fold.y.double() ** 2)
        elif fold is not None:
            g = g + _per_channel(fold.alpha.double()) * fold.y.double() + _per_channel(
                fold.beta.double())
        with torch.enable_grad():
            leaves = [x.double().requires_grad_(), weight64.requires_grad_()]
            t64 = _float64(transform)
            if t64.scale is not None:
                t64 = t64._replace(scale=t64.scale.requires_grad_(),
                                   shift=t64.shift.requires_grad_())
                leaves += [t64.scale, t64.shift]
            conv = (torch.nn.functional.conv_transpose2d if transposed
                    else torch.nn.functional.conv2d)
            y = conv(prologue(leaves[0], t64, slope), leaves[1], stride=stride, padding=padding)
            grads = torch.autograd.grad(y, leaves, g)
        grad_x, grad_w = grads[:2]
        grad_scale, grad_shift = grads[2:] if len(grads) > 2 else (None, None)
        return grad_x, grad_scale, grad_shift, grad_w

    def conv_fused_dgrad(self, grad_y, weight, x, transform, *, channel_offset=0, stride,
                         padding, transposed=False, slope=0.2, fold=None, out=None):
        w = weight.narrow(0 if transposed else 1, channel_offset, x.shape[1]).double()
        grad_x, grad_scale, grad_shift, _ = self._grads(grad_y, w, x, transform, fold, stride,
                                                        padding, transposed, slope)
        grad_x = _stored(grad_x, x.dtype) if out is None else out.copy_(grad_x)
        return (grad_x, None if grad_scale is None else grad_scale.float(),
                None if grad_shift is None else grad_shift.float())

    def conv_fused_wgrad(self, grad_y, x, transform, *, kernel_size, stride, padding,
                         transposed=False, slope=0.2, fold=None):
        c, c_out = x.shape[1], grad_y.shape[1]
        shape = (c, c_out, *kernel_size) if transposed else (c_out, c, *kernel_size)
        # the gradient of a convolution does not depend on the weight's value
        weight64 = torch.zeros(shape, dtype=torch.float64)
        return self._grads(grad_y, weight64, x, transform, fold, stride, padding, transposed,
                           slope)[3].float()
