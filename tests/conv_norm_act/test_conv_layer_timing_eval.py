"""benchmarks/conv_layer_timing.py times a layer's forward as the networks run it in either
mode, since they route every call without a gradient by the table's ``forward`` list: in train
mode (norms on the batch's statistics) and, for a batch-norm network, in eval mode, where
today's path folds each batch norm into the convolution before it (fastp2p.nn.folding: only
the activation is left of the norm-act) and the fused path takes no statistics. Before, the
forward rows were train-mode only, so a ``forward`` verdict compared the fused conv with an
unfolded baseline for eval forwards. Here: which rows are timed, what each provider runs in
eval (spies: no kernel runs, no Triton needed), that the networks' eval forward runs the fused
layers so (through the Triton interpreter), and that the rule wants a win in both modes."""
import importlib

import pytest
import torch

import fastp2p
import fastp2p.nn.folding as folding
import fastp2p.nn.fused_conv as fused_conv_module
import fastp2p.ops
import fastp2p.ops.aligned_channels as aligned_channels
import fastp2p.ops.conv_transpose as conv_transpose
from helpers.benchmark_scripts import load_benchmark_script
from helpers.conv_tables import use_conv_table
from helpers.triton_interpreter import KERNELS

conv_norm_act_module = importlib.import_module("fastp2p.ops.conv_norm_act")  # not the op

TIMING = load_benchmark_script("conv_layer_timing")
TABLE = load_benchmark_script("conv_choice_table")
SIDE, BATCH = 32, 2
UNET = TABLE.unet_layers(ngf=2, num_downs=5, side=SIDE)
PATCHGAN = TABLE.patchgan_layers(ndf=2, n_layers=3, side=SIDE)
CPU = torch.device("cpu")
# (layer, a batch norm before it, one after it)
LAYERS = [
    (UNET[0], False, False),     # the image side
    (UNET[1], False, True),
    (UNET[2], True, True),
    (UNET[4], True, False),      # the innermost down conv
    (UNET[5], False, True),      # the innermost up conv, one source
    (UNET[7], True, True),       # a decoder conv: skip and up
    (UNET[-1], True, False),     # the output conv, into the Tanh
    (PATCHGAN[3], True, True),   # stride 1
    (PATCHGAN[4], True, False),  # the logits
]
IDS = [layer[0] for layer, _, _ in LAYERS]


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("layer, before, after", LAYERS, ids=IDS)
def test_forward_rows_are_timed_in_each_mode_the_networks_route_by_them(monkeypatch, layer,
                                                                        before, after, norm):
    """Eval rows where eval changes the work: a batch norm next to the layer."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    monkeypatch.setattr(TIMING, "PROVIDERS", ("cudnn",))
    monkeypatch.setattr(TIMING, "time_ms", lambda fn, device, quick=False: (fn(), (1, 1, 1))[1])
    rows = TIMING.measure(layer, BATCH, norm, CPU, quick=True, dtype=torch.float32)
    eval_too = norm == "batch" and (before or after)
    assert [(r["mode"], r["network_mode"]) for r in rows] == (
        [("forward", "train")] + [("forward", "eval")] * eval_too
        + [("forward+backward", "train")])
    assert all(r["cudnn"] is not None for r in rows), rows


def _recorded(monkeypatch, module, name, log, result=None):
    """Replace module.name by a spy appending (name, kwargs["norm"] or the module run) to
    ``log``; it calls through unless given a ``result``."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        log.append((name, kwargs.get("norm", args[0] if "conv" in name else None)))
        return real(*args, **kwargs) if result is None else result
    monkeypatch.setattr(module, name, spy)


@pytest.mark.parametrize("layer, before, after", LAYERS, ids=IDS)
def test_the_eval_baseline_folds_the_norm_after_and_keeps_the_activation_before(
        monkeypatch, layer, before, after):
    """cudnn+norm_act in eval: norm-act with norm "none" (the norm before was folded into the
    previous conv), and the conv run is fastp2p.nn.folding.folded_conv's stand-in for the
    conv and an eval batch norm after it (built before the timing); in train, the batch
    norm before it and the conv module itself."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    log, folds = [], []
    for name in ("norm_act", "norm_act_concat"):
        _recorded(monkeypatch, fastp2p.ops, name, log)
    _recorded(monkeypatch, aligned_channels, "conv2d", log)
    _recorded(monkeypatch, conv_transpose, "conv_transpose2d", log)
    real_fold = folding.folded_conv

    def fold(conv, norm, *args):
        folds.append((conv, norm, real_fold(conv, norm, *args)))
        return folds[-1][2]
    monkeypatch.setattr(folding, "folded_conv", fold)
    xs, coeffs, weight, bias = TIMING._layer_inputs(layer, BATCH, "batch", CPU, torch.float32)
    for running in (False, True):
        log.clear()
        TIMING._cudnn(layer, "batch", coeffs, weight, bias, running)(*xs)
        norms = [norm for name, norm in log if name.startswith("norm_act")]
        (conv_name, conv), = [(name, run) for name, run in log if "conv" in name]
        assert conv_name == ("conv_transpose2d" if layer[1] else "conv2d")
        if not running:
            assert norms == ["batch"] * before + ["none"] * (not before and layer[6] != "none")
            assert conv.weight is weight and not folds
            continue
        assert set(norms) <= {"none"} and len(norms) == (layer[6] != "none")
        if not after:
            assert conv.weight is weight and not folds
            continue
        (module, norm, stand_in), = folds
        assert conv is stand_in and not norm.training and module.weight is not None
        assert torch.equal(module.weight, weight) and torch.equal(module.bias, bias)
        folded_weight, folded_bias = folding.fold_batchnorm(module, norm)
        assert torch.equal(conv.weight, folded_weight) and torch.equal(conv.bias, folded_bias)


@pytest.mark.parametrize("layer, before, after", LAYERS, ids=IDS)
def test_the_fused_eval_provider_takes_no_statistics(monkeypatch, layer, before, after):
    """The fused conv in eval: norm "none" (the networks' fused layer before an eval batch
    norm, fastp2p.nn.fused_conv), the prologue still applying the coefficients; in train,
    the batch norm after it. (A stand-in for the op: nothing launches.)"""
    log = []
    _recorded(monkeypatch, conv_norm_act_module, "conv_norm_act", log,
              result=(torch.zeros(1), None, None))
    xs, coeffs, weight, bias = TIMING._layer_inputs(layer, BATCH, "batch", CPU, torch.float32)
    for running, expected in ((False, "batch" if after else "none"), (True, "none")):
        log.clear()
        TIMING._fused(layer, "batch", coeffs, weight, bias, running)(*xs)
        assert log == [("conv_norm_act", expected)]


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
@pytest.mark.parametrize("network", ["unet", "patchgan"])
def test_the_networks_eval_forward_runs_fused_layers_without_statistics(monkeypatch, tmp_path,
                                                                        network):
    """What the eval rows time: a batch-norm network in eval mode, without a gradient, routed by
    a table's ``forward`` list (every layer of it, written by the benchmark's writer), runs each
    fused layer with norm "none" — and in train mode with the batch norm after it."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")  # today's ops; the fused conv is Triton
    if network == "unet":
        layers, channels = TABLE.unet_layers(ngf=4, num_downs=5, side=SIDE), 3
        net = fastp2p.UNet(3, 3, 5, 4, norm="batch")
    else:
        layers, channels = TABLE.patchgan_layers(ndf=4, n_layers=3, side=SIDE, input_nc=6), 6
        net = fastp2p.PatchDiscriminator(6, 4, 3, norm="batch")
    use_conv_table(monkeypatch, tmp_path / "conv_choice.json",
                   [TABLE.layer_entry(layer, BATCH, "batch", "float32") for layer in layers],
                   modes=("forward",))
    log = []
    _recorded(monkeypatch, fused_conv_module, "conv_norm_act", log)
    x = torch.rand(BATCH, channels, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    for training in (True, False):
        log.clear()
        net.train(training)
        with torch.no_grad():
            net(x)
        assert [norm for _, norm in log] == [
            "batch" if followed and training else "none" for *_, followed in layers]


def _row(mode, network_mode, fused_ms):
    entry = TABLE.layer_entry(PATCHGAN[3], BATCH, "batch", "bfloat16")
    timing = [dict(median_ms=m, p20_ms=0.95 * m, p80_ms=1.05 * m) for m in (1.0, fused_ms)]
    return dict(layer=PATCHGAN[3][0], network_norm="batch", network_mode=network_mode,
                batch=BATCH, mode=mode, entry=entry, cudnn=timing[0], fused=timing[1])


@pytest.mark.parametrize("eval_fused_ms, listed", [(0.5, True), (2.0, False)],
                         ids=["wins-in-eval-too", "loses-in-eval"])
def test_a_forward_verdict_wants_a_win_in_both_modes(eval_fused_ms, listed):
    rows = [_row("forward", "train", 0.5), _row("forward", "eval", eval_fused_ms),
            _row("forward+backward", "train", 2.0)]
    fused = TABLE.choice_table(rows, "GPU X")["fused"]
    assert fused == {"forward": [rows[0]["entry"]] if listed else [], "forward+backward": []}
