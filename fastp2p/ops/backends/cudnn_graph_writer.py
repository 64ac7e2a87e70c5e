"""Writing the cuDNN runtime-fusion graphs of ``fastp2p.ops.backends.cudnn_graphs`` (package
``nvidia-cudnn-frontend``, its ``cudnn`` module handed in by the caller): what a built graph
depends on (``LayerKey``), the ways of writing one layer (``Variant``, tried in order until cuDNN
builds one), and the graphs of the forward, dgrad and wgrad (``KINDS``). The module docstring of
cudnn_graphs says what each graph computes and what cuDNN's planner was found to accept."""
from dataclasses import dataclass
from typing import Optional

import torch


class CudnnGraphError(Exception):
    """Base of this provider's own refusals (not a RuntimeError, so a CUDA-graph capture helper
    that falls back on RuntimeError does not swallow them)."""


class CudnnGraphUnavailable(CudnnGraphError):
    """No CUDA device to run the graphs on."""


class CudnnGraphNotInstalled(CudnnGraphUnavailable):
    """The frontend package is missing: the benchmark's "not installed"."""


class CudnnGraphUnsupported(CudnnGraphError):
    """A layer this provider does not build, or a graph cuDNN has no engine for."""


def _nhwc_strides(shape) -> list:
    n, c, h, w = shape
    return [c * h * w, 1, w * c, c]


@dataclass(frozen=True)
class LayerKey:
    """What a built graph depends on: shapes, dtype, geometry, prologue and epilogue."""
    device: torch.device
    dtype: torch.dtype
    input: tuple           # (N, C, H, W) of x
    weight: tuple          # (K, C, KH, KW)
    stride: int
    padding: int
    activation: str
    slope: float
    normed: bool           # a scale/shift prologue (the previous batch norm)
    statistics: bool       # a genstats epilogue (a batch norm follows)
    bias: bool

    @property
    def output(self) -> tuple:
        n, _, h, w = self.input
        k, _, kh, kw = self.weight
        return (n, k, (h + 2 * self.padding - kh) // self.stride + 1,
                (w + 2 * self.padding - kw) // self.stride + 1)


@dataclass(frozen=True)
class Variant:
    """A way of writing the same layer: the dtype of scale/shift and of the virtual
    intermediates ("io": the input's), and what is left to torch: the conv bias and the
    statistics (forward; a pass over y each), the prologue (wgrad: act(x * scale + shift)
    written by torch and read by a plain wgrad), the reductions of the norm's backward
    (dgrad+dz: dz written and reduced by torch)."""
    coefficients: str                  # "float32" | "io"
    bias_in_graph: bool = True
    statistics_in_graph: bool = True
    prologue_in_graph: bool = True
    reductions_in_graph: bool = True   # dgrad+dz: sum dz and sum dz * x

    def describe(self) -> str:
        torch_does = [what for what, in_graph in (("bias", self.bias_in_graph),
                                                  ("statistics", self.statistics_in_graph),
                                                  ("prologue", self.prologue_in_graph),
                                                  ("reductions", self.reductions_in_graph))
                      if not in_graph]
        return (f"scale/shift {self.coefficients}"
                + (f", {' and '.join(torch_does)} by torch" if torch_does else ""))

    def applies_to(self, key: "LayerKey") -> bool:
        """False where the variant only differs from an earlier one in what the layer lacks."""
        return ((self.bias_in_graph or key.bias)
                and (self.statistics_in_graph or key.statistics)
                and (self.prologue_in_graph or key.normed or key.activation != "none"))


_COEFFICIENT_VARIANTS = (Variant("float32"), Variant("io"))
# Fused as much as cuDNN takes: everything in the graph, then the bias, then the statistics
# left to torch.
_FORWARD_VARIANTS = _COEFFICIENT_VARIANTS + tuple(
    Variant(coefficients, bias, statistics)
    for bias, statistics in ((False, True), (True, False), (False, False))
    for coefficients in ("float32", "io"))
_WGRAD_VARIANTS = _COEFFICIENT_VARIANTS + (Variant("io", prologue_in_graph=False),)
_DGRAD_DZ_VARIANTS = _COEFFICIENT_VARIANTS + (Variant("float32", reductions_in_graph=False),
                                              Variant("io", reductions_in_graph=False))


class Built:
    """A built graph, its IR tensors by role and its workspace size."""

    def __init__(self, graph, tensors: dict, variant: Variant):
        self.graph, self.tensors, self.variant = graph, tensors, variant
        self.workspace = graph.get_workspace_size()


class GraphWriter:
    """One pygraph being written: tensors described from shapes and torch dtypes."""

    def __init__(self, cudnn, handle, key: LayerKey, variant: Variant):
        self.cudnn, self.key, self.variant = cudnn, key, variant
        self.io = _data_type(cudnn, key.dtype)
        self.coefficient_type = (cudnn.data_type.FLOAT if variant.coefficients == "float32"
                                 else self.io)
        self.graph = cudnn.pygraph(io_data_type=self.io,
                                   intermediate_data_type=self.coefficient_type,
                                   compute_data_type=cudnn.data_type.FLOAT, handle=handle)
        self.tensors = {}

    def nhwc(self, role: str, shape, data_type=None):
        self.tensors[role] = self.graph.tensor(name=role, dim=list(shape),
                                               stride=_nhwc_strides(shape),
                                               data_type=data_type or self.io)
        return self.tensors[role]

    def per_channel(self, role: str, channels: int, data_type):
        return self.nhwc(role, (1, channels, 1, 1), data_type)

    def output(self, role: str, tensor, shape, data_type=None):
        tensor.set_output(True).set_data_type(data_type or self.io)
        if shape is not None:
            tensor.set_dim(list(shape)).set_stride(_nhwc_strides(shape))
        self.tensors[role] = tensor
        return tensor

    def normalized(self, x):
        """z = x * scale + shift where a norm precedes, else x."""
        if not self.key.normed:
            return x
        channels = self.key.input[1]
        z = self.graph.scale(x, self.per_channel("scale", channels, self.coefficient_type),
                             name="norm_scale")
        return self.graph.bias(z, self.per_channel("shift", channels, self.coefficient_type),
                               name="norm_shift")

    def prologue(self, x):
        """act(x * scale + shift): what the conv reads."""
        z = self.normalized(x)
        if self.key.activation == "none":
            return z
        return self.graph.relu(z, negative_slope=self.slope(), name="act")

    def slope(self) -> Optional[float]:
        """cuDNN's RELU with a negative slope is the LeakyReLU."""
        return self.key.slope if self.key.activation == "leaky_relu" else None

    def geometry(self) -> dict:
        key = self.key
        return dict(padding=[key.padding] * 2, stride=[key.stride] * 2, dilation=[1, 1])

    def build(self) -> Built:
        """Plan and build; any refusal is this variant's (the next one is tried). Besides
        cudnnGraphNotSupportedError, cuDNN may refuse at check_support or while compiling a
        runtime-fusion kernel with another error type: named in the reason, so a fault of
        the graph written here shows in the record too."""
        cudnn = self.cudnn
        try:
            self.graph.build([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        except cudnn.cudnnGraphNotSupportedError as error:
            raise CudnnGraphUnsupported(f"cuDNN has no engine ({self.variant.describe()}): "
                                        f"{_one_line(error)}") from None
        except Exception as error:  # recorded with its type, never swallowed
            raise CudnnGraphUnsupported(f"cuDNN could not build ({self.variant.describe()}): "
                                        f"{type(error).__name__}: {_one_line(error)}") from None
        return Built(self.graph, self.tensors, self.variant)


def _one_line(error, limit: int = 600) -> str:
    """cuDNN's multi-line refusal (one line per engine tried) as one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _data_type(cudnn, dtype: torch.dtype):
    table = {torch.bfloat16: cudnn.data_type.BFLOAT16, torch.float16: cudnn.data_type.HALF,
             torch.float32: cudnn.data_type.FLOAT}
    if dtype not in table:
        raise CudnnGraphUnsupported(f"dtype {dtype}: bfloat16, float16 or float32 only")
    return table[dtype]


def _write_forward(writer: GraphWriter) -> None:
    key, g = writer.key, writer.graph
    a = writer.prologue(writer.nhwc("x", key.input))
    y = g.conv_fprop(a, writer.nhwc("weight", key.weight), name="conv", **writer.geometry())
    if key.bias and writer.variant.bias_in_graph:
        y = g.bias(y, writer.per_channel("bias", key.weight[0], writer.io), name="conv_bias")
    writer.output("y", y, key.output)
    if key.statistics and writer.variant.statistics_in_graph:
        total, squares = g.genstats(y, name="statistics")
        writer.output("sum", total, None, writer.cudnn.data_type.FLOAT)
        writer.output("sumsq", squares, None, writer.cudnn.data_type.FLOAT)


def _write_dgrad(writer: GraphWriter, with_dz: bool) -> None:
    """dx = scale * act'(z) * dgrad(dy), z = x * scale + shift recomputed; with_dz also the
    per-channel sums of dz = act'(z) * dgrad(dy) and of dz * x (the gradients of shift and
    scale: dbn_weight's reductions, which the Python API lacks as a node), or dz itself for
    torch to reduce."""
    key, g = writer.key, writer.graph
    grad = g.conv_dgrad(loss=writer.nhwc("dy", key.output),
                        filter=writer.nhwc("weight", key.weight), name="dgrad",
                        out_dims=list(key.input), **writer.geometry())
    grad.set_stride(_nhwc_strides(key.input))
    if key.activation != "none":
        z = writer.normalized(writer.nhwc("x", key.input))
        grad = g.relu_backward(loss=grad, input=z, negative_slope=writer.slope(),
                               name="act_backward")
    if key.normed:
        if with_dz:
            _write_coefficient_grads(writer, grad)
        if "scale" not in writer.tensors:
            writer.per_channel("scale", key.input[1], writer.coefficient_type)
        grad = g.scale(grad, writer.tensors["scale"], name="dx_scale")
    writer.output("dx", grad, key.input)


def _write_coefficient_grads(writer: GraphWriter, dz) -> None:
    key, g = writer.key, writer.graph
    if not writer.variant.reductions_in_graph:
        writer.output("dz", dz, key.input)
        return
    channels, add = key.input[1], writer.cudnn.reduction_mode.ADD
    if "x" not in writer.tensors:
        writer.nhwc("x", key.input)
    for role, value in (("dz_sum", dz), ("dzx_sum", g.mul(dz, writer.tensors["x"],
                                                          name="dz_x"))):
        total = g.reduction(value, mode=add, out_dims=[1, channels, 1, 1], name=role)
        writer.output(role, total, (1, channels, 1, 1), writer.cudnn.data_type.FLOAT)


def _write_wgrad(writer: GraphWriter) -> None:
    key, g = writer.key, writer.graph
    if writer.variant.prologue_in_graph:
        a = writer.prologue(writer.nhwc("x", key.input))
    else:
        a = writer.nhwc("activated", key.input)
    dweight = g.conv_wgrad(image=a, loss=writer.nhwc("dy", key.output), name="wgrad",
                           out_dims=list(key.weight), **writer.geometry())
    writer.output("dweight", dweight, key.weight)


# kind -> (what writes its graph, the variants tried in order)
KINDS = {
    "forward": (_write_forward, _FORWARD_VARIANTS),
    "dgrad": (lambda writer: _write_dgrad(writer, False), _COEFFICIENT_VARIANTS),
    "dgrad+dz": (lambda writer: _write_dgrad(writer, True), _DGRAD_DZ_VARIANTS),
    "wgrad": (_write_wgrad, _WGRAD_VARIANTS),
}
