"""A network forward the conv choice routes no layer of calls today's forward itself
(fastp2p.nn.fused.unet_forward / sequential_forward), not the per-layer walk
(fastp2p.nn.unet_conv / fused_conv.conv_stack_forward) with every layer left to its module: the
U-Net's walk lacks today's CPU inference forms (packed oneDNN weights, channels-last compute,
the deconvolution phases; 1.6x slower on U-Net-256, review r38 F1). It walks only where the
table lists a layer for the input's device, the call's direction, dtype and batch size
(``conv_choice.may_fuse``), and the walk only where one of those is its own: its plan asks each
layer's key, with the size its input will have, before any runs
(fastp2p.nn.fused_conv.layer_plan; review finding L2: a table of another network's layers only
made it walk). Where the walk runs, its module layers run today's ops. No Triton needed: which
forward runs is recorded by spies, and where a backend must exist for the choice to be asked at
all, a stand-in says one does."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastp2p
import fastp2p.nn.discriminators as discriminators_module
import fastp2p.nn.fused_conv as fused_conv_module
import fastp2p.nn.unet as unet_module
import fastp2p.nn.unet_conv as unet_conv_module
from fastp2p.nn.fused import sequential_forward, unet_forward
from fastp2p.nn.fused_conv import conv_stack_forward
from fastp2p.nn.unet_conv import unet_conv_forward
from fastp2p.ops.backends import conv_choice
from helpers.benchmark_scripts import load_benchmark_script
from helpers.conv_tables import use_conv_table

TABLE = load_benchmark_script("conv_choice_table")
BATCH, SIDE = 2, 32
# The second conv of both tiny networks (U-Net ngf 4, num_downs 5; PatchGAN ndf 4), float32 at
# BATCH, as a table measured on this CPU lists it.
DOWN1 = dict(norm="batch", dtype="float32", input=[BATCH, 4, 16, 16], weight=[8, 4, 4, 4],
             stride=2, padding=1)
# Layers of one network only: the fourth conv of each (16 -> 32 channels at 4x4), the U-Net's
# of stride 2, the PatchGAN's of stride 1.
UNET_DOWN3 = dict(DOWN1, input=[BATCH, 16, 4, 4], weight=[32, 16, 4, 4])
PATCHGAN_CONV3 = dict(UNET_DOWN3, stride=1)
# What a GPU run writes: a bfloat16 layer of U-Net-256 at batch 64 (the review's probe).
GPU_LAYER = dict(norm="batch", dtype="bfloat16", input=[64, 64, 128, 128],
                 weight=[128, 64, 4, 4], stride=2, padding=1)


@pytest.fixture
def table(monkeypatch, tmp_path):
    """``use_conv_table`` at a new path per call."""
    def use(entries, **kwargs):
        path = tmp_path / f"conv_choice-{len(list(tmp_path.iterdir()))}.json"
        use_conv_table(monkeypatch, path, entries, **kwargs)
    return use


@pytest.fixture
def a_backend(monkeypatch):
    """conv_fused_backend finds one on every device (the choice is asked, nothing launches)."""
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())


def _spy(monkeypatch, module, today: str, walk: str, walk_runs: bool = False) -> list:
    """Record which of ``module``'s two forwards a network calls; the walk runs today's
    forward in its place (with a stand-in backend it could not launch a kernel) unless
    ``walk_runs``."""
    called, todays = [], getattr(module, today)

    def spy(name):
        run = getattr(module, walk) if walk_runs and name == walk else todays

        def forward(*args):
            called.append(name)
            return run(*args)
        return forward
    monkeypatch.setattr(module, today, spy(today))
    monkeypatch.setattr(module, walk, spy(walk))
    return called


def _unet_calls(monkeypatch, gradient=False, batch=BATCH, dtype=torch.float32):
    called = _spy(monkeypatch, unet_module, "unet_forward", "unet_conv_forward")
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, 4, norm="batch").to(dtype).train(gradient)
    with torch.set_grad_enabled(gradient):
        net(torch.rand(batch, 3, SIDE, SIDE, dtype=dtype))
    return called


def _patchgan_calls(monkeypatch, gradient=False, walk_runs=False):
    """``walk_runs``: the walk runs itself (else today's forward runs in its place)."""
    called = _spy(monkeypatch, discriminators_module, "sequential_forward",
                  "conv_stack_forward", walk_runs)
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(6, 4, 3, norm="batch").train(gradient)
    with torch.set_grad_enabled(gradient):
        net(torch.rand(BATCH, 6, SIDE, SIDE))
    return called


@pytest.mark.parametrize("gradient", [False, True], ids=["inference", "training"])
def test_a_gpu_table_leaves_cpu_forwards_on_todays_forward(monkeypatch, table, gradient):
    """A table a GPU run committed (one bf16 layer): a CPU float32 U-Net and PatchGAN call
    today's forward, in inference (where today's has the CPU forms) and in training."""
    table([GPU_LAYER], device="NVIDIA H200")
    assert _unet_calls(monkeypatch, gradient) == ["unet_forward"]
    assert _patchgan_calls(monkeypatch, gradient) == ["sequential_forward"]


def test_a_table_of_another_device_leaves_todays_forward(monkeypatch, table, a_backend):
    """Listed for this CPU, a layer of these networks makes them walk; listed for a GPU, not."""
    table([DOWN1])
    assert _unet_calls(monkeypatch, gradient=True) == ["unet_conv_forward"]
    assert _patchgan_calls(monkeypatch, gradient=True) == ["conv_stack_forward"]
    table([DOWN1], device="NVIDIA H200")
    assert _unet_calls(monkeypatch, gradient=True) == ["unet_forward"]
    assert _patchgan_calls(monkeypatch, gradient=True) == ["sequential_forward"]


@pytest.mark.parametrize("mode", conv_choice.MODES)
def test_a_direction_walks_only_calls_of_that_direction(monkeypatch, table, a_backend, mode):
    table([DOWN1], modes=(mode,))
    for gradient in (False, True):
        walks = conv_choice.mode(gradient) == mode
        assert _unet_calls(monkeypatch, gradient) == [
            "unet_conv_forward" if walks else "unet_forward"]


def test_a_forward_of_another_batch_or_dtype_calls_todays_forward(monkeypatch, table,
                                                                    a_backend):
    """None of its layers can be listed: the table's layer is float32 at batch 2."""
    table([DOWN1])
    assert _unet_calls(monkeypatch, batch=1) == ["unet_forward"]
    assert _unet_calls(monkeypatch, dtype=torch.bfloat16) == ["unet_forward"]
    assert _unet_calls(monkeypatch) == ["unet_conv_forward"]


def _patchgan_walk(monkeypatch, gradient) -> list:
    """What fastp2p.nn.fused_conv.conv_stack_forward runs of a PatchGAN forward that
    conv_choice.may_fuse sent it: "sequential_forward" (today's forward), or each layer it
    walks ("module"; none of these tables' layers may run fused: the stand-in backend could
    not launch it)."""
    ran = []
    module_layer, todays = fused_conv_module._module_layer, fused_conv_module.sequential_forward

    def walked(*args):
        ran.append("module")
        return module_layer(*args)

    def sequential(*args):
        ran.append("sequential_forward")
        return todays(*args)
    monkeypatch.setattr(fused_conv_module, "_module_layer", walked)
    monkeypatch.setattr(fused_conv_module, "_fused_layer",
                        lambda *args: pytest.fail("a layer the table does not list ran fused"))
    monkeypatch.setattr(fused_conv_module, "sequential_forward", sequential)
    assert _patchgan_calls(monkeypatch, gradient, walk_runs=True) == ["conv_stack_forward"]
    return ran


@pytest.mark.parametrize("gradient", [False, True], ids=["inference", "training"])
def test_a_table_of_another_networks_layers_leaves_the_patchgan_on_todays_forward(
        monkeypatch, table, a_backend, gradient):
    """The table lists a U-Net layer for this device, direction, dtype and batch: may_fuse
    lets the PatchGAN's forward through to its walk, whose plan finds none of its own layers
    listed, so it runs today's forward without walking a layer (it walked all five, each left
    to its module, before the plan)."""
    table([UNET_DOWN3])
    assert _patchgan_walk(monkeypatch, gradient) == ["sequential_forward"]


@pytest.mark.parametrize("entry, planned", [
    (PATCHGAN_CONV3, [None, None, None, torch.float32, None]),
    (DOWN1, [None, torch.float32, None, None, None]),  # the U-Net's second conv too
    (UNET_DOWN3, None),
    (dict(PATCHGAN_CONV3, input=[BATCH, 16, 5, 5]), None),  # a size the stack never makes
])
def test_the_patchgan_plan_asks_each_layer_with_the_size_its_input_will_have(
        monkeypatch, table, a_backend, entry, planned):
    table([entry])
    net = fastp2p.PatchDiscriminator(6, 4, 3, norm="batch")
    layers = fused_conv_module._layers(net.model)
    assert fused_conv_module._stack_plan(layers, torch.rand(BATCH, 6, SIDE, SIDE),
                                         True) == planned


def test_the_patchgan_plan_finds_each_layer_the_benchmark_lists(monkeypatch, table,
                                                                 a_backend):
    """A table of one of the benchmark's PatchGAN layers (benchmarks/conv_choice_table.py, at
    this network's sizes) plans exactly that layer fused."""
    net = fastp2p.PatchDiscriminator(6, 4, 3, norm="instance")
    layers = fused_conv_module._layers(net.model)
    for index, layer in enumerate(TABLE.patchgan_layers(ndf=4, n_layers=3, side=SIDE)):
        table([TABLE.layer_entry(layer, BATCH, "instance", "float32")])
        planned = fused_conv_module._stack_plan(layers, torch.rand(BATCH, 6, SIDE, SIDE), True)
        assert planned == [torch.float32 if i == index else None for i in range(5)], layer[0]


def _unet_walk(monkeypatch, gradient) -> list:
    """What fastp2p.nn.unet_conv.unet_conv_forward runs of a U-Net forward that
    conv_choice.may_fuse sent it: "unet_forward" (today's forward), or each conv it walks
    ("down" / "up"; none of these tables' layers may run fused: the stand-in backend could
    not launch it)."""
    ran = []

    def spy(name, todays):
        def run(*args):
            ran.append(name)
            return todays(*args)
        return run
    monkeypatch.setattr(unet_conv_module, "unet_forward", spy("unet_forward", unet_forward),
                        raising=False)  # (the walk before its plan never called it)
    for name, function in (("down", "_down"), ("up", "_up")):
        monkeypatch.setattr(unet_conv_module, function,
                            spy(name, getattr(unet_conv_module, function)))
    called = _spy(monkeypatch, unet_module, "unet_forward", "unet_conv_forward", walk_runs=True)
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, 4, norm="batch").train(gradient)
    with torch.set_grad_enabled(gradient):
        net(torch.rand(BATCH, 3, SIDE, SIDE))
    assert called == ["unet_conv_forward"]
    return ran


@pytest.mark.parametrize("gradient", [False, True], ids=["inference", "training"])
def test_a_table_of_another_networks_layers_leaves_the_unet_on_todays_forward(
        monkeypatch, table, a_backend, gradient):
    """The table lists a PatchGAN layer for this device, direction, dtype and batch: may_fuse
    lets the U-Net's forward through to its walk, whose plan finds none of its own convs
    listed, so it runs today's forward (with its CPU inference forms) without walking a conv
    (it walked all ten, each left to its module, before the plan)."""
    table([PATCHGAN_CONV3])
    assert _unet_walk(monkeypatch, gradient) == ["unet_forward"]


def test_the_unet_plan_finds_each_layer_the_benchmark_lists(monkeypatch, table, a_backend):
    """A table of one of the benchmark's U-Net layers (benchmarks/conv_choice_table.py, at this
    network's sizes: its down convs, then its up convs innermost first, the walk's order)
    plans exactly that conv fused; a PatchGAN-only layer plans none."""
    net = fastp2p.UNet(3, 3, 5, 4, norm="batch")
    x = torch.rand(BATCH, 3, SIDE, SIDE)
    layers = TABLE.unet_layers(ngf=4, num_downs=5, side=SIDE)
    for index, layer in enumerate(layers):
        table([TABLE.layer_entry(layer, BATCH, "batch", "float32")])
        assert unet_conv_module._unet_plan(net, x, True) == [
            torch.float32 if i == index else None for i in range(len(layers))], layer[0]
    table([PATCHGAN_CONV3])
    assert unet_conv_module._unet_plan(net, x, True) is None


@pytest.mark.parametrize("settings", [
    dict(kernel_size=4, stride=2, padding=1),
    dict(kernel_size=3, stride=1, padding="same"),
    dict(kernel_size=3, stride=2, padding="valid"),
    dict(kernel_size=(3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1)),
], ids=["patchgan", "same", "valid", "uneven"])
def test_conv_output_size_is_torchs(settings):
    conv = torch.nn.Conv2d(2, 3, **settings)
    x = torch.rand(1, 2, 17, 22)
    assert fused_conv_module.conv_output_size(conv, x.shape[2:]) == tuple(conv(x).shape[2:])


def test_without_a_backend_a_listed_layer_leaves_todays_forward(monkeypatch, table):
    """Listed for this CPU, but nothing can run the fused convolution here."""
    table([DOWN1])
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: None)
    assert _unet_calls(monkeypatch) == ["unet_forward"]


def test_under_the_compiler_a_table_routes_nothing(monkeypatch, table, a_backend):
    """It measured eager layers; the override still applies."""
    table([DOWN1])
    x = torch.rand(BATCH, 3, SIDE, SIDE)
    assert conv_choice.may_fuse(x, False)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not conv_choice.may_fuse(x, False)
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    assert conv_choice.may_fuse(x, False)


class _RecordedOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _ops(forward, net, x, gradient):
    """The aten ops of ``forward(net, x)``'s second call (the first builds cached weights)."""
    with torch.set_grad_enabled(gradient):
        forward(net, x)
        with _RecordedOps() as recorded:
            forward(net, x)
    return recorded.ops


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_the_walk_with_no_layer_fused_runs_todays_ops(monkeypatch, norm):
    """What a layer the table leaves to its module runs next to fused ones: today's ops — the
    PatchGAN's always; the U-Net's in training (in CPU inference today's forward has CPU forms
    the walk lacks, which is why a forward with no listed layer never walks)."""
    monkeypatch.setenv("FASTP2P_CONV", "module")
    torch.manual_seed(0)
    unet = fastp2p.UNet(3, 3, 5, 4, norm=norm, use_dropout=True).train()
    x = torch.rand(BATCH, 3, SIDE, SIDE)
    assert _ops(unet_conv_forward, unet, x, True) == _ops(unet_forward, unet, x, True)
    patchgan = fastp2p.PatchDiscriminator(6, 4, 3, norm=norm)
    x = torch.rand(BATCH, 6, SIDE, SIDE)
    for gradient in (True, False):
        patchgan.train(gradient)
        assert (_ops(conv_stack_forward, patchgan.model, x, gradient)
                == _ops(sequential_forward, patchgan.model, x, gradient))
