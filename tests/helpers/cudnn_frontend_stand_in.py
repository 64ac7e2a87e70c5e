"""A stand-in for the ``cudnn`` package (nvidia-cudnn-frontend), enough of ``cudnn.pygraph`` for
fastp2p.ops.backends.cudnn_graphs: it records the graph the module writes and executes it on
CPU tensors in float64, with the meaning this project reads in cuDNN's nodes (scale and bias
are per-channel multiply and add, relu with a negative slope is the LeakyReLU and its backward
takes the forward input, conv_fprop/dgrad/wgrad are a convolution and its two gradients,
genstats gives per-channel float sums of y and y^2, reduction ADD to (1, C, 1, 1) sums over
N, H, W). It proves the module's wiring and the
torch math around the graphs on a CPU; whether cuDNN means the same is the GPU test's
(tests/conv_norm_act/test_cudnn_graphs_cuda.py) to show.

``refuse(graph)`` (settable) says which graphs "no engine" takes: build() then raises the
stand-in's cudnnGraphNotSupportedError, as the real planner does."""
import types

import torch
import torch.nn.functional as F


class cudnnGraphNotSupportedError(Exception):
    pass


class _Enum:
    def __init__(self, *names):
        for name in names:
            setattr(self, name, name)


data_type = _Enum("BFLOAT16", "HALF", "FLOAT")
heur_mode = _Enum("A", "FALLBACK")
reduction_mode = _Enum("ADD")


class Tensor:
    def __init__(self, name, dim=None, stride=None, data_type=None, node=None):
        self.name, self.dim, self.stride, self.data_type = name, dim, stride, data_type
        self.node, self.is_output = node, False

    def set_output(self, value):
        self.is_output = value
        return self

    def set_data_type(self, value):
        self.data_type = value
        return self

    def set_dim(self, dim):
        self.dim = list(dim)
        return self

    def set_stride(self, stride):
        self.stride = list(stride)
        return self


def _conv_args(params):
    return dict(stride=params["stride"][0], padding=params["padding"][0])


def _per_channel(t):
    return t.reshape(1, -1, 1, 1)


class pygraph:
    """Records nodes (op, inputs, params, outputs) in order; execute() evaluates them."""
    built_graphs = []      # every graph build() accepted, for the tests to inspect
    refuse = staticmethod(lambda graph: False)

    def __init__(self, io_data_type=None, intermediate_data_type=None, compute_data_type=None,
                 handle=None, **_):
        self.io, self.intermediate = io_data_type, intermediate_data_type
        self.nodes, self.inputs = [], []

    def tensor(self, name, dim, stride, data_type):
        t = Tensor(name, list(dim), list(stride), data_type)
        self.inputs.append(t)
        return t

    def _node(self, op, inputs, outputs=1, **params):
        node = types.SimpleNamespace(op=op, inputs=inputs, params=params)
        node.outputs = [Tensor(f"{params.get('name', op)}:{i}", node=node)
                        for i in range(outputs)]
        self.nodes.append(node)
        return node.outputs[0] if outputs == 1 else node.outputs

    def scale(self, input, scale, name=""):
        return self._node("scale", [input, scale], name=name)

    def bias(self, input, bias, name=""):
        return self._node("bias", [input, bias], name=name)

    def mul(self, a, b, name=""):
        return self._node("mul", [a, b], name=name)

    def reduction(self, input, mode, out_dims, name=""):
        assert mode == reduction_mode.ADD
        return self._node("reduction", [input], name=name, out_dims=out_dims)

    def relu(self, input, negative_slope=None, name=""):
        return self._node("relu", [input], name=name, slope=negative_slope)

    def relu_backward(self, loss, input, negative_slope=None, name=""):
        return self._node("relu_backward", [loss, input], name=name, slope=negative_slope)

    def conv_fprop(self, image, weight, padding, stride, dilation, name=""):
        return self._node("conv_fprop", [image, weight], name=name, padding=padding,
                          stride=stride, dilation=dilation)

    def conv_dgrad(self, loss, filter, padding, stride, dilation, out_dims, name=""):
        return self._node("conv_dgrad", [loss, filter], name=name, padding=padding,
                          stride=stride, dilation=dilation, out_dims=out_dims)

    def conv_wgrad(self, image, loss, padding, stride, dilation, out_dims, name=""):
        return self._node("conv_wgrad", [image, loss], name=name, padding=padding,
                          stride=stride, dilation=dilation, out_dims=out_dims)

    def genstats(self, input, name=""):
        return self._node("genstats", [input], outputs=2, name=name)

    def build(self, heuristics):
        if pygraph.refuse(self):
            raise cudnnGraphNotSupportedError("stand-in: no engine for this graph\nengine 0: no")
        pygraph.built_graphs.append(self)

    def get_workspace_size(self):
        return 16

    def execute(self, pack, workspace, handle=None):
        for tensor, buffer in pack.items():
            _check_layout(tensor, buffer)
        values = {id(t): buffer.double() for t, buffer in pack.items() if t in self.inputs}
        for node in self.nodes:
            args = [values[id(t)] for t in node.inputs]
            for out, value in zip(node.outputs, _evaluate(node, args)):
                values[id(out)] = value
        for tensor, buffer in pack.items():
            if tensor.is_output:
                buffer.copy_(values[id(tensor)].reshape(buffer.shape))


def _check_layout(tensor, buffer):
    """The backend reads only the pointer: a buffer must lay its elements out as declared
    (strides of extent-1 dimensions do not matter)."""
    if tensor.dim is None or tensor.stride is None:
        return
    assert list(buffer.shape) == tensor.dim or buffer.numel() == _numel(tensor.dim), \
        f"{tensor.name}: buffer {tuple(buffer.shape)} for declared {tensor.dim}"
    if list(buffer.shape) == tensor.dim:
        for extent, got, declared in zip(tensor.dim, buffer.stride(), tensor.stride):
            assert extent == 1 or got == declared, \
                f"{tensor.name}: strides {buffer.stride()} for declared {tensor.stride}"


def _numel(dim):
    n = 1
    for d in dim:
        n *= d
    return n


def _evaluate(node, args):
    p = node.params
    if node.op == "scale":
        return [args[0] * _per_channel(args[1])]
    if node.op == "bias":
        return [args[0] + _per_channel(args[1])]
    if node.op == "mul":
        return [args[0] * args[1]]
    if node.op == "reduction":  # to the declared per-channel (1, C, 1, 1)
        return [args[0].sum((0, 2, 3), keepdim=True)]
    if node.op == "relu":
        return [F.leaky_relu(args[0], p["slope"]) if p["slope"] else F.relu(args[0])]
    if node.op == "relu_backward":
        grad, z = args
        return [torch.where(z > 0, grad, grad * (p["slope"] or 0.0))]
    if node.op == "conv_fprop":
        return [F.conv2d(args[0], args[1], **_conv_args(p))]
    if node.op == "conv_dgrad":
        return [torch.nn.grad.conv2d_input(p["out_dims"], args[1], args[0], **_conv_args(p))]
    if node.op == "conv_wgrad":
        return [torch.nn.grad.conv2d_weight(args[0], p["out_dims"], args[1], **_conv_args(p))]
    if node.op == "genstats":
        return [args[0].sum((0, 2, 3)), (args[0] ** 2).sum((0, 2, 3))]
    raise AssertionError(f"stand-in: no op {node.op}")


class Handle:
    pass


def create_handle():
    return Handle()


def set_stream(handle, stream):
    handle.stream = stream


def as_module():
    """This stand-in as the importable module ``cudnn``."""
    module = types.ModuleType("cudnn")
    for name in ("cudnnGraphNotSupportedError", "data_type", "heur_mode", "reduction_mode",
                 "pygraph",
                 "create_handle", "set_stream", "Handle"):
        setattr(module, name, globals()[name])
    return module
