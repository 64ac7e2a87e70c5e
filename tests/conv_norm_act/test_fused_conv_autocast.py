"""The fused convolution under bf16 autocast (the engine's CUDA step runs G and D under it): a
bfloat16 choice table takes effect, and every listed layer runs as autocast runs the module's
conv — bf16 sources, weight and bias, the op outside autocast, float32 scale/shift, statistics
and running buffers, a bf16 output — with fused and module layers mixed in one chain.

On CPU (torch.autocast("cpu", bfloat16)) with the GEMM launchers replaced by float64 stand-ins
that store their results in the dtype the kernels write (tests/helpers/conv_fused_stand_in.py;
the interpreter's bf16 tl.dot is not meaningful), so this proves the routing, the casts and
the gradients' way back, not the kernels' bf16 arithmetic (a GPU's: test_unet_fused_conv_cuda.py,
test_engine_fused_conv_cuda.py). The real conv_stats_finish kernel (float32) runs, interpreted.
Whole U-Net / PatchGAN, forward and backward: the output, input gradient, every parameter
gradient and the running statistics within DESIGN §5's bf16 rule against float64, as today's
path under the same autocast is."""
import copy

import pytest
import torch

import fastp2p
from fastp2p import reference
from fastp2p.ops.backends import conv_choice
from helpers.benchmark_scripts import load_benchmark_script
from helpers.conv_fused_stand_in import ConvFusedStandIn
from helpers.conv_tables import CPU, write_conv_table
from helpers.network_checks import poison_allocations, unet_pair
from helpers.tolerances import BF16_NETWORK, BF16_VS_AUTOCAST, relative_error
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]

TABLE = load_benchmark_script("conv_choice_table")
SIDE, BATCH, NDF = 32, 2, 4


class _RecordedTable:
    """The written table as conv_choice.fused_layers(TABLE) answers it, recording every key."""

    def __init__(self, keys):
        self.listed, self.asked = keys, []

    def __contains__(self, key):
        self.asked.append(key)
        return key in self.listed

    def __iter__(self):  # conv_choice.may_fuse's look at the whole table: no lookup
        return iter(self.listed)


@pytest.fixture
def stand_in(monkeypatch):
    """Today's ops on the reference backend, NaN allocations, the float64 launchers."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    poison_allocations(monkeypatch)
    launchers = ConvFusedStandIn()
    launchers.install(monkeypatch, KERNELS)
    return launchers


def _use_bf16_table(monkeypatch, tmp_path, layers, norm, chosen):
    """A table listing ``chosen`` of the benchmark's ``layers`` for bfloat16 (what a GPU run
    writes); returns its entries and the lookup recorder."""
    entries = [TABLE.layer_entry(layers[i], BATCH, norm, "bfloat16") for i in sorted(chosen)]
    path = write_conv_table(tmp_path / "conv_choice.json", entries)
    table = _RecordedTable(conv_choice.fused_layers.__wrapped__(path))
    monkeypatch.setattr(conv_choice, "fused_layers", lambda _: table)
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
    return entries, table


def _run(net, x, autocast):
    """Output, input gradient, parameter gradients and buffers of one training forward (under
    bf16 autocast when asked) and the backward of a fixed random weighting of the output."""
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = net.train()(x)
    weight = torch.rand(out.shape, generator=torch.Generator().manual_seed(9),
                        dtype=torch.float64) * 2 - 1
    (out.double() * weight).sum().backward()
    return dict(output=out, grad_input=x.grad,
                **{f"grad {n}": p.grad for n, p in net.named_parameters()},
                **{f"buffer {n}": b for n, b in net.named_buffers() if b.is_floating_point()})


def _check_against_autocast(net, theirs64, x, launches, count):
    """Fused (net as routed, ``count`` fused launches) and today's path, both under autocast,
    against the reference module in float64."""
    today = copy.deepcopy(net)
    got = _run(net, x, autocast=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTP2P_CONV", "module")
        autocast = _run(today, x, autocast=True)
    expected = _run(theirs64, x.double(), autocast=False)
    assert len(launches.forwards) == count  # today's path launched no fused conv
    assert got["output"].dtype == autocast["output"].dtype == torch.bfloat16
    assert relative_error(got["output"], expected["output"]) <= BF16_NETWORK
    for name in got:
        assert got[name].dtype == autocast[name].dtype, name
        if name.startswith(("grad ", "buffer ")):
            assert got[name].dtype == torch.float32, name  # parameters, .grad, running stats
    grads = [n for n in expected if n.startswith("grad ")]
    errors = {n: (relative_error(got[n], expected[n]), relative_error(autocast[n], expected[n]))
              for n in expected if n not in grads}
    errors["every parameter gradient"] = tuple(relative_error(
        torch.cat([run[n].double().flatten() for n in grads]),
        torch.cat([expected[n].flatten() for n in grads])) for run in (got, autocast))
    for name, (error, autocast_error) in errors.items():
        assert error <= BF16_VS_AUTOCAST * autocast_error + 1e-3, (name, error, autocast_error)
    # One parameter's gradient alone is a small sum in these tiny networks: a LeakyReLU input
    # that bf16 rounding moves across zero changes it by a few percent, on either path (seen
    # both ways across seeds), so each is held to the network's bf16 noise, not to autocast's
    # luck on that one tensor. A wrong gradient is off by far more.
    noise = max(relative_error(autocast[n], expected[n]) for n in grads
                if expected[n].abs().max().item() > 1e-10)
    for name in grads:
        if expected[name].abs().max().item() <= 1e-10:  # conv biases before an InstanceNorm
            continue
        error = relative_error(got[name], expected[name])
        assert error <= BF16_VS_AUTOCAST * noise + 1e-3, (name, error, noise)


def _check_eval(net, theirs64, x):
    """Eval under autocast without a gradient (batch norm's running statistics, updated by the
    training forward, as constants of the fused prologues; the module layers fold theirs)."""
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = net.eval()(x)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("FASTP2P_CONV", "module")
                autocast = copy.deepcopy(net)(x)
        expected = theirs64.eval()(x.double())
    error, autocast_error = relative_error(got, expected), relative_error(autocast, expected)
    assert got.dtype == autocast.dtype == torch.bfloat16
    assert error <= BF16_NETWORK
    assert error <= BF16_VS_AUTOCAST * autocast_error + 1e-3, (error, autocast_error)


def _check_launches(launches, count):
    """``count`` fused forwards, each handed bf16 operands and float32 scale/shift, outside
    autocast."""
    assert len(launches.forwards) == count
    for launch in launches.forwards:
        assert set(launch["sources"]) == {torch.bfloat16} and launch["weight"] == torch.bfloat16
        assert launch["bias"] in (None, torch.bfloat16)
        assert set(launch["scales"]) <= {torch.float32}
        assert not launch["autocast"]


def _check_table_lookups(table, entries, convs):
    """Every conv looked up once, with a bfloat16 key of a training call on the CPU; the hits
    are the listed entries."""
    assert len(table.asked) == convs
    assert {(device, mode, layer[1]) for device, mode, layer in table.asked} == {
        (CPU, "forward+backward", "bfloat16")}
    assert sorted(k for k in table.asked if k in table.listed) == sorted(
        conv_choice.routed_key(CPU, "forward+backward", TABLE.entry_key(e)) for e in entries)


def _patchgan_pair(norm):
    """(fastp2p.PatchDiscriminator, the reference NLayerDiscriminator in float64)."""
    torch.manual_seed(0)
    theirs = reference.init_weights(reference.NLayerDiscriminator(
        6, NDF, 3, reference.get_norm_layer(norm)))
    ours = fastp2p.PatchDiscriminator(6, ndf=NDF, n_layers=3, norm=norm)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs.double()


def _images(channels):
    return torch.rand(BATCH, channels, SIDE, SIDE,
                      generator=torch.Generator().manual_seed(1)) * 2 - 1


# Mixed chains: U-Net (num_downs 5) a down conv with a norm on both sides, the innermost
# decoder (one source), a two-source decoder and the outermost decoder; PatchGAN the image-side
# conv, a stride-2 conv with norms on both sides, and the logit conv.
@pytest.mark.parametrize("network, norm, chosen", [
    ("unet", "batch", {2, 5, 7, 9}), ("unet", "instance", {1, 6, 8}),
    ("patchgan", "batch", {0, 2, 4}), ("patchgan", "instance", {1, 3})])
def test_a_bf16_table_takes_effect_under_autocast(monkeypatch, tmp_path, stand_in, network,
                                                  norm, chosen):
    if network == "unet":
        layers, nets, x = TABLE.unet_layers(ngf=4, num_downs=5, side=SIDE), unet_pair(norm), \
            _images(3)
    else:
        layers, nets, x = TABLE.patchgan_layers(ndf=NDF, n_layers=3, side=SIDE, input_nc=6), \
            _patchgan_pair(norm), _images(6)
    entries, table = _use_bf16_table(monkeypatch, tmp_path, layers, norm, chosen)
    net = nets[0]
    _check_against_autocast(*nets, x, stand_in, len(chosen))
    _check_launches(stand_in, len(chosen))
    _check_table_lookups(table, entries, len(layers))
    for name, module in net.named_modules():  # the running statistics updated once
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.num_batches_tracked.item() == 1, name
    if norm == "batch":
        _check_eval(*nets, x)
        assert len(stand_in.forwards) == 2 * len(chosen)


@pytest.mark.parametrize("network", ["unet", "patchgan"])
def test_forced_fused_under_autocast_fuses_every_conv(monkeypatch, stand_in, network):
    """FASTP2P_CONV=fused under autocast no longer refuses: every conv, bf16 operands."""
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    nets, x, convs = (unet_pair("batch"), _images(3), 10) if network == "unet" else (
        _patchgan_pair("instance"), _images(6), 5)
    _check_against_autocast(*nets, x, stand_in, convs)
    _check_launches(stand_in, convs)


def test_the_layer_dtype_is_the_autocast_dtype(monkeypatch):
    """The key and the cast dtype: autocast's where autocast casts the conv's operands (float32
    input and weight, or bf16 weights as MasterWeightsAdam keeps them), the tensors' own
    without autocast; float64, which autocast leaves alone, cannot run fused."""
    monkeypatch.setenv("FASTP2P_CONV", "fused")
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())
    geometry = dict(stride=2, padding=1, norm="batch", gradient=True)
    x, weight = torch.rand(2, 4, 8, 8), torch.rand(8, 4, 4, 4)
    assert conv_choice.fused_conv_dtype(x, weight, **geometry) == torch.float32
    assert conv_choice.fused_conv_dtype(x.bfloat16(), weight.bfloat16(),
                                        **geometry) == torch.bfloat16
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            assert conv_choice.fused_conv_dtype(x, weight, **geometry) == dtype
            assert conv_choice.fused_conv_dtype(x, weight.to(dtype), **geometry) == dtype
    with pytest.raises(ValueError, match="cannot run this layer"):
        conv_choice.fused_conv_dtype(x, weight.bfloat16(), **geometry)  # no autocast
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(
            ValueError, match="cannot run this layer"):
        conv_choice.fused_conv_dtype(x.double(), weight.double(), **geometry)
