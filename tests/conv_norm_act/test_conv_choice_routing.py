"""A table written by the benchmark's writer (benchmarks/conv_choice_table.py), in place of
fastp2p/ops/backends/conv_choice.json, routes exactly the layers it lists through the fused
convolution — and the networks give what today's path gives (output, input gradient, every
parameter gradient, buffers; FP32_NETWORK). Tiny U-Net (batch norm) and PatchGAN (instance
norm), float32 through the Triton interpreter: the table's keys are per dtype, so the rows are
written for float32; the layer lists are the benchmark's own, built at the tiny sizes."""
import copy

import pytest
import torch

import fastp2p
from fastp2p.ops.backends import conv_choice
from helpers.benchmark_scripts import load_benchmark_script
from helpers.conv_tables import CPU
from helpers.network_checks import poison_allocations
from helpers.tolerances import FP32_NETWORK, assert_close
from helpers.triton_interpreter import KERNELS

pytestmark = [pytest.mark.interpreter,
              pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and "
                                 "no GPU")]

TABLE = load_benchmark_script("conv_choice_table")
SIDE, BATCH = 32, 2
FAST, SLOW = (dict(median_ms=m, p20_ms=0.95 * m, p80_ms=1.05 * m) for m in (1.0, 2.0))


def _rows(layers, norm, chosen):
    """Benchmark rows in which the fused conv wins forward+backward on ``chosen`` layers only;
    every other layer wins its forward alone (which routes only calls without a gradient, not
    these training calls)."""
    rows = []
    for index, layer in enumerate(layers):
        entry = TABLE.layer_entry(layer, BATCH, norm, "float32")
        wins = index in chosen
        for mode, fused in (("forward", FAST), ("forward+backward", FAST if wins else SLOW)):
            rows.append(dict(layer=layer[0], network_norm=norm, batch=BATCH, mode=mode,
                             entry=entry, cudnn=SLOW if fused is FAST else FAST, fused=fused))
    return rows


@pytest.fixture
def written_table(monkeypatch, tmp_path):
    """Write the table of (layers, norm, chosen) and put it in place of conv_choice.json."""
    def write(layers, norm, chosen):
        path = tmp_path / "conv_choice.json"
        table = TABLE.choice_table(_rows(layers, norm, chosen), CPU)
        TABLE.write_table(table, path)
        monkeypatch.setattr(conv_choice, "TABLE", path)
        conv_choice.fused_layers.cache_clear()
        return table["fused"]["forward+backward"]
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")  # today's ops; the fused conv is Triton
    poison_allocations(monkeypatch)
    yield write
    conv_choice.fused_layers.cache_clear()


def _launched_layers(monkeypatch):
    """(input with the sources' channels summed, weight, transposed) of each fused launch."""
    launched, launcher = [], KERNELS.conv_fused_fwd

    def recorded(sources, transforms, weight, *args, transposed=False, **kwargs):
        n, _, h, w = sources[0].shape
        launched.append(((n, sum(s.shape[1] for s in sources), h, w), tuple(weight.shape),
                         transposed))
        return launcher(sources, transforms, weight, *args, transposed=transposed, **kwargs)

    monkeypatch.setattr(KERNELS, "conv_fused_fwd", recorded)
    return launched


def _run(net, x):
    """Output, input gradient, parameter gradients and buffers of one training forward and
    the backward of a fixed random weighting of the output."""
    x = x.clone().requires_grad_()
    out = net(x)
    weight = torch.rand(out.shape, generator=torch.Generator().manual_seed(9)) * 2 - 1
    (out * weight).sum().backward()
    return dict(output=out.detach(), grad_input=x.grad,
                **{f"grad {n}": p.grad for n, p in net.named_parameters()},
                **{f"buffer {n}": b for n, b in net.named_buffers() if b.is_floating_point()})


def _check_routing(monkeypatch, net, x, listed):
    today = copy.deepcopy(net)
    launched = _launched_layers(monkeypatch)
    fused = _run(net, x)
    assert sorted(launched) == sorted((tuple(e["input"]), tuple(e["weight"]),
                                       e.get("transposed", False)) for e in listed)
    monkeypatch.setenv("FASTP2P_CONV", "module")
    expected = _run(today, x)
    assert len(launched) == len(listed)  # today's path launched no fused conv
    # Gradients that are exactly zero in exact arithmetic (conv biases before an instance
    # norm) hold float32 rounding noise on both paths: bounded by the largest gradient.
    noise = FP32_NETWORK * max(v.abs().max().item() for n, v in expected.items()
                               if n.startswith("grad "))
    for name, value in expected.items():
        if value.abs().max().item() <= noise:
            assert fused[name].abs().max().item() <= noise, name
        else:
            assert_close(fused[name], value, FP32_NETWORK, name)


def _input(channels):
    return torch.rand(BATCH, channels, SIDE, SIDE,
                      generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_unet_runs_exactly_the_listed_layers_fused(monkeypatch, written_table):
    """A down conv with a norm on both sides, the innermost (one-source) and a two-source
    decoder conv, and the outermost decoder conv (no norm after it)."""
    layers = TABLE.unet_layers(ngf=4, num_downs=5, side=SIDE)
    listed = written_table(layers, "batch", chosen={2, 5, 7, 9})
    assert sum(e.get("transposed", False) for e in listed) == 3
    torch.manual_seed(0)
    _check_routing(monkeypatch, fastp2p.UNet(3, 3, 5, 4, norm="batch").train(), _input(3),
                   listed)


def test_patchgan_runs_exactly_the_listed_layers_fused(monkeypatch, written_table):
    """The image-side conv (6 channels), one stride-2 conv with an instance norm on both
    sides, and the logit conv."""
    layers = TABLE.patchgan_layers(ndf=4, n_layers=3, side=SIDE, input_nc=6)
    listed = written_table(layers, "instance", chosen={0, 2, 4})
    torch.manual_seed(0)
    _check_routing(monkeypatch, fastp2p.PatchDiscriminator(6, 4, 3, norm="instance").train(),
                   _input(6), listed)
