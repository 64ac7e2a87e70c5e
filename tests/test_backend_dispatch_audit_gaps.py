"""Gaps a mutation audit of the backend layer found (fastp2p/ops/backends: the dispatcher,
conv_choice, the reference backend, the cuDNN graph writer's CPU-side parts): each test pins
one behaviour no other test checked. No GPU needed: CUDA tensors and the cuDNN frontend are
stood in for where only the routing or the written graph is checked."""
import json
import sys
import types

import pytest
import torch

from fastp2p.ops import backends
from fastp2p.ops.backends import choice_tables, conv_choice, cpp as cpp_backend, cuda_choice
from fastp2p.ops.backends import reference
from fastp2p.ops.backends import cudnn_graph_writer as writer
from fastp2p.ops.backends.contract import CONV_FUSED
from helpers import cudnn_frontend_stand_in as stand_in
from helpers.conv_tables import use_conv_table
from helpers.triton_interpreter import KERNELS

CPU = torch.device("cpu")
needs_interpreter = pytest.mark.skipif(
    KERNELS is None, reason="needs triton built by the interpreter (and no GPU)")


@pytest.fixture
def fresh_choices(monkeypatch):
    """The dispatcher's remembered answers emptied for the test (and restored after it), so a
    choice made here is the registry walk's, not an earlier test's."""
    monkeypatch.setattr(backends, "_resolved", {})


# --- the dispatcher (fastp2p/ops/backends/__init__.py) ---------------------------------------

@needs_interpreter
def test_unforced_cpu_calls_follow_triton_interpret_between_calls(monkeypatch, fresh_choices):
    """With the interpreter on and nothing forced, CPU float32 runs Triton and float64 the
    reference; turning the interpreter off reroutes the next call (the remembered choice is
    keyed by TRITON_INTERPRET too)."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.backend_name_for(CPU, torch.float32) == "triton"
    assert backends.backend_name_for(CPU, torch.float64) == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    off = "cpp" if cpp_backend.available() else "reference"
    assert backends.backend_name_for(CPU, torch.float32) == off
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.backend_name_for(CPU, torch.float32) == "triton"


@needs_interpreter
def test_forcing_triton_on_cpu_needs_interpreter_built_kernels(monkeypatch, fresh_choices):
    """FASTP2P_BACKEND=triton on CPU tensors is refused where the kernels were not built by the
    interpreter, instead of launching GPU kernels on CPU memory."""
    monkeypatch.setenv("FASTP2P_BACKEND", "triton")
    monkeypatch.setattr(KERNELS, "INTERPRETED", False)
    with pytest.raises(ValueError, match="FASTP2P_BACKEND=triton on CPU tensors needs "
                                         "TRITON_INTERPRET=1"):
        backends.backend_for(CPU, torch.float32)


@needs_interpreter
def test_the_fused_convolution_on_cpu_follows_triton_interpret(monkeypatch):
    """conv_fused_backend: Triton for CPU tensors only while TRITON_INTERPRET is on."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.conv_fused_backend(CPU).NAME == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert backends.conv_fused_backend(CPU) is None


@needs_interpreter
@pytest.mark.parametrize("device", ["meta", "mps"])
def test_no_fused_convolution_on_devices_triton_does_not_run(monkeypatch, device):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.conv_fused_backend(torch.device(device)) is None


def _fake_triton(launchers):
    """A Triton-like backend module (interpreter-built) with only ``launchers``."""
    module = types.SimpleNamespace(NAME="triton", DTYPES=(torch.float32,), INTERPRETED=True,
                                   available=lambda: True, __name__="fake_triton")
    for name in launchers:
        setattr(module, name, lambda *a, **k: None)
    return backends.LoadedBackend(module)


@pytest.mark.parametrize("missing", CONV_FUSED)
def test_a_backend_lacking_one_fused_launcher_runs_no_fused_convolution(monkeypatch, missing):
    """The reference has no fused launchers to fall back to: a backend without all five is
    not the fused convolution's backend."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    partial = _fake_triton([name for name in CONV_FUSED if name != missing])
    complete = _fake_triton(CONV_FUSED)
    monkeypatch.setattr(backends, "_load", lambda module: partial)
    assert backends.conv_fused_backend(CPU) is None
    monkeypatch.setattr(backends, "_load", lambda module: complete)
    assert backends.conv_fused_backend(CPU) is complete


def test_a_module_that_reports_itself_unavailable_is_no_backend(monkeypatch):
    module = types.ModuleType("fastp2p_audit_unavailable_backend")
    module.NAME, module.DTYPES = "unavailable", (torch.float32,)
    module.available = lambda: False
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert backends._load.__wrapped__(module.__name__) is None
    module.available = lambda: True
    assert backends._load.__wrapped__(module.__name__).NAME == "unavailable"


def test_a_forced_name_is_read_without_surrounding_blanks(monkeypatch, fresh_choices):
    monkeypatch.setenv("FASTP2P_BACKEND", " reference\n")
    assert backends.backend_name_for(CPU, torch.float32) == "reference"


@needs_interpreter
@pytest.mark.parametrize("device", ["mps", "xpu"])
def test_other_devices_run_only_the_backend_that_serves_them(monkeypatch, fresh_choices, device):
    """Triton and the C++ kernels are listed for CUDA / CPU only: an mps or xpu tensor runs the
    reference, whatever TRITON_INTERPRET says."""
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.backend_name_for(torch.device(device), torch.float32) == "reference"


class _CudaTensorStandIn:
    """What norm_act_backend_for reads of a CUDA conv output (no GPU needed to route one)."""
    is_cpu, is_cuda = False, True
    device = torch.device("cuda", 0)

    def __init__(self, shape, dtype=torch.float32):
        self.shape, self.dtype = torch.Size(shape), dtype


@needs_interpreter
@pytest.mark.skipif(not cpp_backend.available(), reason="fastp2p._C not built")
def test_the_cuda_choice_table_routes_only_unforced_calls_with_a_cuda_build(monkeypatch,
                                                                            fresh_choices):
    """norm_act_backend_for on CUDA: the table's shapes go to the C++ kernels only with a CUDA
    build of them and FASTP2P_BACKEND unset; a forced backend is run as forced."""
    listed = _CudaTensorStandIn([2, 8, 4, 4])
    monkeypatch.setattr(choice_tables, "_cuda_name", lambda index: "NVIDIA H200")
    monkeypatch.setattr(cuda_choice, "cpp_shapes", lambda: frozenset(
        {("NVIDIA H200", cuda_choice.table_key("batch", torch.float32, listed.shape))}))
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: True)
    monkeypatch.delenv("FASTP2P_BACKEND", raising=False)
    assert backends.norm_act_backend_for(listed, "batch").NAME == "cpp"
    assert backends.norm_act_backend_for(listed, "instance").NAME == "triton"
    assert backends.norm_act_backend_for(_CudaTensorStandIn([2, 8, 4, 5]), "batch").NAME \
        == "triton"
    monkeypatch.setenv("FASTP2P_BACKEND", "triton")
    assert backends.norm_act_backend_for(listed, "batch").NAME == "triton"
    monkeypatch.delenv("FASTP2P_BACKEND")
    monkeypatch.setattr(cpp_backend, "cuda_available", lambda: False)
    assert backends.norm_act_backend_for(listed, "batch").NAME == "triton"


# --- the conv choice (fastp2p/ops/backends/conv_choice.py) -----------------------------------

@pytest.mark.parametrize("table", [[{"format": 2}], "conv_choice", 2])
def test_a_table_that_is_not_an_object_is_refused_as_of_another_format(tmp_path, table):
    path = tmp_path / "conv_choice.json"
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match="is not a conv choice table of format 2"):
        conv_choice.fused_layers.__wrapped__(path)


@pytest.mark.parametrize("value", [" fused", "module\n", "\tfused "])
def test_the_conv_override_is_read_without_surrounding_blanks(monkeypatch, value):
    monkeypatch.setenv("FASTP2P_CONV", value)
    assert conv_choice.forced() == value.strip()


@pytest.mark.parametrize("gradient", [False, True])
def test_the_conv_override_alone_answers_may_fuse(monkeypatch, gradient):
    """FASTP2P_CONV=module keeps every network forward on today's path (no walk asking its
    layers); =fused sends it to the walk whatever the table says."""
    x = torch.rand(2, 3, 8, 8) + 0.5
    monkeypatch.setenv("FASTP2P_CONV", "module")
    assert conv_choice.may_fuse(x, gradient) is False
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    assert conv_choice.may_fuse(x, gradient) is True


def test_a_listed_layer_the_fused_convolution_cannot_run_keeps_its_module(monkeypatch,
                                                                          tmp_path):
    """A table entry routes a layer only where the fused convolution can run it: a backend
    on the device and one fused dtype for input and weight (no ValueError, unlike
    FASTP2P_CONV=fused)."""
    layer = dict(norm="batch", dtype="float32", input=[2, 4, 16, 16], weight=[8, 4, 4, 4],
                 stride=2, padding=1)
    use_conv_table(monkeypatch, tmp_path / "table.json", [layer])
    x, weight = torch.rand(2, 4, 16, 16) + 0.5, torch.rand(8, 4, 4, 4) + 0.5

    def dtype(weight):
        return conv_choice.fused_conv_dtype(x, weight, stride=2, padding=1, norm="batch",
                                            gradient=True)
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())
    assert dtype(weight) == torch.float32
    assert dtype(weight.double()) is None
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: None)
    assert dtype(weight) is None


def test_may_fuse_needs_a_backend_for_a_listed_layer(monkeypatch, tmp_path):
    layer = dict(norm="batch", dtype="float32", input=[2, 4, 16, 16], weight=[8, 4, 4, 4],
                 stride=2, padding=1)
    use_conv_table(monkeypatch, tmp_path / "table.json", [layer])
    x = torch.rand(2, 3, 32, 32) + 0.5
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())
    assert conv_choice.may_fuse(x, True)
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: None)
    assert not conv_choice.may_fuse(x, True)


def test_the_module_override_beats_a_table_that_lists_the_layer(monkeypatch, tmp_path):
    layer = dict(norm="instance", dtype="float32", input=[2, 4, 16, 16], weight=[8, 4, 4, 4],
                 stride=2, padding=1)
    use_conv_table(monkeypatch, tmp_path / "table.json", [layer])
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())
    x, weight = torch.rand(2, 4, 16, 16) + 0.5, torch.rand(8, 4, 4, 4) + 0.5
    kwargs = dict(stride=2, padding=1, norm="instance", gradient=False)
    assert conv_choice.fused_conv_dtype(x, weight, **kwargs) == torch.float32
    monkeypatch.setenv("FASTP2P_CONV", "module")
    assert conv_choice.fused_conv_dtype(x, weight, **kwargs) is None


# --- the cuDNN graph writer (fastp2p/ops/backends/cudnn_graph_writer.py), no GPU needed ------

def _layer_key(**changes):
    fields = dict(device=CPU, dtype=torch.float16, input=(2, 4, 16, 16), weight=(8, 4, 4, 4),
                  stride=2, padding=1, activation="leaky_relu", slope=0.2, normed=False,
                  statistics=True, bias=True)
    fields.update(changes)
    return writer.LayerKey(**fields)


def _graph_writer(key, variant=writer.Variant("float32")):
    return writer.GraphWriter(stand_in.as_module(), None, key, variant)


@pytest.mark.parametrize("dtype, name", [(torch.float16, "HALF"), (torch.bfloat16, "BFLOAT16"),
                                         (torch.float32, "FLOAT")])
def test_each_storage_dtype_is_written_as_its_cudnn_type(dtype, name):
    cudnn = stand_in.as_module()
    assert writer._data_type(cudnn, dtype) == getattr(cudnn.data_type, name)
    io = _graph_writer(_layer_key(dtype=dtype), writer.Variant("io"))
    assert io.graph.io == io.graph.intermediate == getattr(cudnn.data_type, name)
    assert _graph_writer(_layer_key(dtype=dtype)).graph.intermediate == cudnn.data_type.FLOAT


def test_float64_is_no_cudnn_graph_dtype():
    with pytest.raises(writer.CudnnGraphUnsupported, match="dtype torch.float64"):
        writer._data_type(stand_in.as_module(), torch.float64)


def test_the_geometry_is_the_layers_without_dilation():
    geometry = _graph_writer(_layer_key(stride=2, padding=3)).geometry()
    assert geometry == dict(padding=[3, 3], stride=[2, 2], dilation=[1, 1])


def test_a_variant_leaving_the_prologue_to_torch_applies_to_an_activation_alone():
    """wgrad's plain variant reads act(x) written by torch: worth trying for a layer with an
    activation but no norm before it, not for one with neither."""
    plain = writer.Variant("io", prologue_in_graph=False)
    assert plain.applies_to(_layer_key(activation="relu", normed=False))
    assert plain.applies_to(_layer_key(activation="none", normed=True))
    assert not plain.applies_to(_layer_key(activation="none", normed=False))


def test_a_variant_names_everything_it_leaves_to_torch():
    variant = writer.Variant("io", bias_in_graph=False, statistics_in_graph=False)
    assert variant.describe() == "scale/shift io, bias and statistics by torch"
    assert writer.Variant("float32").describe() == "scale/shift float32"


def test_a_long_cudnn_refusal_is_one_bounded_line():
    reason = writer._one_line(RuntimeError("engine 0 refused\n" + "x " * 1000))
    assert "\n" not in reason and reason.startswith("engine 0 refused x x")
    assert len(reason) == 603 and reason.endswith("...")
    assert writer._one_line(RuntimeError("a\n  b")) == "a b"
    assert writer._one_line(KeyError()) == "KeyError"


# --- the reference backend (fastp2p/ops/backends/reference.py) ------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reference_updates_half_precision_running_statistics(dtype):
    """The reference computes in float32 through copies of a half-precision module's running
    statistics: the update reaches the module's own buffers (as nn.BatchNorm2d's)."""
    torch.manual_seed(0)
    x = (torch.randn(3, 4, 5, 5) * 2 + 1).to(dtype)
    running_mean, running_var = torch.rand(4).to(dtype), (torch.rand(4) + 0.5).to(dtype)
    expected_mean, expected_var = running_mean.float(), running_var.float()
    torch.nn.functional.batch_norm(x.float(), expected_mean, expected_var, training=True,
                                   momentum=0.1, eps=1e-5)
    out = torch.empty_like(x)
    reference.norm_act_fwd(x, None, None, running_mean, running_var, out, 0, norm="batch",
                           training=True, momentum=0.1, eps=1e-5, activation="none", slope=0.2,
                           dropout_p=0.0, seed=1, offset=0)
    assert running_mean.dtype == running_var.dtype == dtype
    torch.testing.assert_close(running_mean.float(), expected_mean, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(running_var.float(), expected_var, rtol=1e-2, atol=1e-2)
