"""Gaps a mutation audit of fastp2p.nn's network modules found in the suite: each test pins one
behaviour that a plausible slip in the module (a dropped condition, a changed bound, a result
left unconverted) left every existing fast test passing. Tiny networks, random data."""
import copy
import functools
import re

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from fastp2p.nn.checkpoint_size import MAX_ENTRIES, refuse_amplified
from fastp2p.nn.network_state import (biases_an_instance_norm_cancels, dropout_rng_modules,
                                      set_requires_grad)
from fastp2p.nn.norm import describe_norm_layer
from helpers.conv_tables import use_conv_table
from helpers.network_checks import (compare_networks, count_fused_convs, network_pair,
                                    randomize_batchnorms)
from helpers.tolerances import BF16_NETWORK, FP32_NETWORK, assert_close, relative_error
from helpers.triton_interpreter import KERNELS


# --- fastp2p.nn.checkpoint_size ----------------------------------------------------------------

def test_shared_empty_containers_are_counted_at_each_reference():
    """Each container is an entry, not only the tensors and values it holds: empty lists
    shared 25 deep are 2**26 - 1 entries to a walk that visits each reference (the structure
    check's), with not one tensor among them."""
    nested = []
    for _ in range(25):
        nested = [nested, nested]
    with pytest.raises(ValueError, match="entries counted at each reference"):
        refuse_amplified({"state": nested}, "state.pth")
    # (the bound is on entries, containers included: just under it loads)
    flat = [[] for _ in range(MAX_ENTRIES // 2 - 2)]
    refuse_amplified({"state": flat}, "state.pth")


def test_a_sparse_tensor_is_a_leaf_without_a_storage_to_measure():
    """torch has no storage to ask of a sparse tensor (NotImplementedError): it counts as one
    entry of no dense bytes, as a meta tensor does, and the check passes it on."""
    sparse = (torch.rand(4, 4) * (torch.rand(4, 4) > 0.5)).to_sparse()
    refuse_amplified({"w": torch.rand(3), "sparse": sparse}, "state.pth")


# --- fastp2p.nn.network_state -------------------------------------------------------------------

def test_set_requires_grad_freezes_and_unfreezes_every_parameter():
    net = fastp2p.PatchDiscriminator(6, 4, 2)
    set_requires_grad(net, False)
    assert not any(p.requires_grad for p in net.parameters())
    set_requires_grad(net, True)
    assert all(p.requires_grad for p in net.parameters())


def test_dropout_rng_modules_names_only_the_counter_owners():
    """The U-Nets (their ``dropout_rng`` buffer) by qualified name, nothing else: the engine
    saves and DDP skips exactly these buffers."""
    unet = fastp2p.UNet(3, 3, 5, 4, use_dropout=True)
    pair = nn.Sequential(unet, fastp2p.PatchDiscriminator(6, 4, 2))
    assert dropout_rng_modules(pair) == {"0": unet}
    assert dropout_rng_modules(unet) == {"": unet}
    assert dropout_rng_modules(fastp2p.PixelDiscriminator(6, 4)) == {}


def test_biases_an_instance_norm_cancels_are_named_as_the_state_dict_names_them():
    torch.manual_seed(0)
    patch = reference.NLayerDiscriminator(6, 4, 2, reference.get_norm_layer("instance"))
    cancelled = biases_an_instance_norm_cancels(patch)
    assert cancelled == {"model.2.bias", "model.5.bias"}
    assert cancelled <= set(patch.state_dict())
    # a bare Sequential (prefix ""), a bias-less conv and a BatchNorm cancel nothing more
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4), nn.Conv2d(4, 4, 3, bias=False),
                        nn.InstanceNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    assert biases_an_instance_norm_cancels(seq) == {"0.bias"}
    assert not biases_an_instance_norm_cancels(
        reference.NLayerDiscriminator(6, 4, 2, reference.get_norm_layer("batch")))


# --- fastp2p.nn.norm ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["unet", "patch", "pixel"])
def test_without_a_norm_argument_the_networks_use_the_references_default_batch_norm(kind):
    torch.manual_seed(0)
    ours, theirs = {
        "unet": (lambda: fastp2p.UNet(3, 3, 5, 4), lambda: reference.UnetGenerator(3, 3, 5, 4)),
        "patch": (lambda: fastp2p.PatchDiscriminator(6, 4, 2),
                  lambda: reference.NLayerDiscriminator(6, 4, 2)),
        "pixel": (lambda: fastp2p.PixelDiscriminator(6, 4),
                  lambda: reference.PixelDiscriminator(6, 4)),
    }[kind]
    net = ours()
    assert net.config()["norm"] == "batch"
    assert any(type(m) is nn.BatchNorm2d for m in net.modules())
    assert {k: v.shape for k, v in net.state_dict().items()} == \
        {k: v.shape for k, v in theirs().state_dict().items()}


@pytest.mark.parametrize("factory,described", [
    (functools.partial(nn.BatchNorm2d, track_running_stats=False),
     "BatchNorm2d(track_running_stats=False)"),
    (functools.partial(nn.BatchNorm2d, affine=False), "BatchNorm2d(affine=False)"),
    (nn.BatchNorm2d, "batch"),
])
def test_only_the_references_batch_norm_is_described_as_batch(factory, described):
    """"batch" rebuilds nn.BatchNorm2d (affine, with running statistics): a BatchNorm without
    running statistics has other state_dict keys and another eval forward, so it keeps its
    readable form."""
    assert describe_norm_layer(factory) == described
    assert fastp2p.PatchDiscriminator(6, 4, 2, norm_layer=factory).config()["norm"] == described


@pytest.mark.parametrize("build", [
    lambda: fastp2p.UNet(3, 3, 5, 4, norm_layer=3),
    lambda: fastp2p.PatchDiscriminator(6, 4, 2, norm_layer=0.5),
    lambda: fastp2p.PixelDiscriminator(6, 4, norm_layer=[nn.BatchNorm2d]),
], ids=["unet", "patch", "pixel"])
def test_a_norm_layer_that_is_no_factory_is_refused_in_one_line(build):
    with pytest.raises(ValueError, match="norm_layer must be callable"):
        build()


# --- fastp2p.nn.unet, fastp2p.nn.discriminators: config, reference fallbacks ------------------

@pytest.mark.parametrize("build", [
    lambda: fastp2p.UNet(2, 1, 6, 4, norm="instance", use_dropout=True),
    lambda: fastp2p.PatchDiscriminator(5, 4, 1, norm="none"),
    lambda: fastp2p.PixelDiscriminator(5, 4, norm="instance"),
], ids=["unet", "patch", "pixel"])
def test_config_rebuilds_the_same_network(build):
    """config() is every constructor argument (repr and the checkpoint messages print it):
    the network it rebuilds has the same layers, Dropouts included, and state_dict."""
    net = build()
    again = type(net)(**net.config())
    assert again.config() == net.config()
    assert [type(m) for m in again.modules()] == [type(m) for m in net.modules()]
    assert {k: v.shape for k, v in again.state_dict().items()} == \
        {k: v.shape for k, v in net.state_dict().items()}
    assert all(f"{k}={v}" in repr(net) for k, v in net.config().items())


@pytest.mark.parametrize("kind", ["patch", "pixel"])
def test_layers_the_fused_forward_cannot_reproduce_run_the_references(kind):
    """A GroupNorm (no fused form), and a forward hook on an inner layer (the fused forward
    calls no submodule): the reference forward, its values, the hook fired."""
    torch.manual_seed(0)
    ours, theirs = network_pair(kind, functools.partial(nn.GroupNorm, 2))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert_close(ours(x), theirs(x), FP32_NETWORK)
    ours, theirs = network_pair(kind)
    seen = []
    inner = (ours.model if kind == "patch" else ours.net)[1]
    inner.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.no_grad():
        assert_close(ours(x), theirs(x), FP32_NETWORK)
    assert len(seen) == 1


# --- fastp2p.nn.compat ----------------------------------------------------------------------------

@pytest.mark.parametrize("override", [
    dict(norm_layer=functools.partial(nn.InstanceNorm2d, affine=True)), dict(norm="instance")],
    ids=["norm_layer", "norm"])
def test_a_norm_override_that_does_not_fit_is_advised_as_given(override):
    """A norm the caller gave (either form) is what to check; the advice about what the keys
    cannot tell is for a norm read off the keys."""
    state = fastp2p.PatchDiscriminator(6, 4, 2).state_dict()
    with pytest.raises(ValueError) as raised:
        fastp2p.PatchDiscriminator.from_checkpoint(state, **override)
    first_line = str(raised.value).splitlines()[0]
    assert first_line.startswith("the state_dict does not fit PatchDiscriminator(")
    name = next(iter(override))
    assert first_line.endswith(f"with {name}= as given: check {name}= against what the "
                               "network was built with")


# --- fastp2p.nn.recomputation ---------------------------------------------------------------------

def test_an_eval_unet_built_with_dropout_takes_reentrant_checkpointing():
    """Only a training forward applies dropout: an eval one recomputed inside the backward (the
    reentrant variant) draws nothing, so it is not refused, and its gradients are the plain
    run's."""
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, 4, norm="batch", use_dropout=True).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    weight = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    grads = []
    for checkpointed in (False, True):
        net.zero_grad()
        xg = x.clone().requires_grad_()
        out = (torch.utils.checkpoint.checkpoint(net, xg, use_reentrant=True) if checkpointed
               else net(xg))
        (out * weight).sum().backward()
        grads.append([xg.grad] + [p.grad.clone() for p in net.parameters()])
    for got, expected in zip(*grads):
        assert_close(got, expected, FP32_NETWORK)


# --- fastp2p.nn.unet_conv -------------------------------------------------------------------------

@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
def test_an_eval_unet_with_one_fused_conv_drops_nothing(monkeypatch, tmp_path):
    """The fused-convolution walk (one layer, the innermost down conv, listed in a choice
    table) of an eval U-Net built with dropout: its Dropout is off, as the reference's, and
    the counter stays where it was."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = count_fused_convs(monkeypatch, KERNELS)
    use_conv_table(monkeypatch, tmp_path / "table.json", [dict(
        norm="none", dtype="float32", input=[1, 32, 2, 2], weight=[32, 32, 4, 4], stride=2,
        padding=1, transposed=False)])
    torch.manual_seed(0)
    theirs = reference.UnetGenerator(3, 3, 6, 4, reference.get_norm_layer("batch"), True)
    ours = fastp2p.UNet(3, 3, 6, 4, norm="batch", use_dropout=True)
    ours.load_state_dict(theirs.state_dict())
    randomize_batchnorms(ours, 3)
    theirs.load_state_dict(ours.state_dict())
    ours.set_dropout_rng(5, 123)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out, expected = ours.eval()(x), theirs.double().eval()(x.double())
    assert calls[0] == 1
    assert_close(out, expected, FP32_NETWORK)
    assert ours.dropout_rng.tolist() == [5, 123]


@pytest.mark.interpreter
@pytest.mark.skipif(KERNELS is None, reason="interpreter tests: need triton and no GPU")
def test_an_eval_batch_norm_without_running_statistics_normalises_by_the_batch_in_the_fused_walk(
        monkeypatch, tmp_path):
    """A fused layer (the 16->32 down conv at 8x8, listed in a choice table) whose
    BatchNorm2d keeps no running statistics: in eval, as torch's, it normalises by the batch's
    own statistics (its running buffers are None: reading them raised)."""
    monkeypatch.setenv("FASTP2P_BACKEND", "reference")
    calls = count_fused_convs(monkeypatch, KERNELS)
    use_conv_table(monkeypatch, tmp_path / "table.json", [dict(
        norm="batch", dtype="float32", input=[2, 16, 8, 8], weight=[32, 16, 4, 4], stride=2,
        padding=1, transposed=False)])
    untracked = functools.partial(nn.BatchNorm2d, track_running_stats=False)
    torch.manual_seed(0)
    theirs = reference.UnetGenerator(3, 3, 6, 4, untracked)
    ours = fastp2p.UNet(3, 3, 6, 4, norm_layer=untracked)
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out, expected = ours.eval()(x), theirs.double().eval()(x.double())
    assert calls[0] == 1
    assert_close(out, expected, FP32_NETWORK)

# --- fastp2p.nn.batch_statistics ------------------------------------------------------------------

def _tracking_switched_off(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
    return net


@pytest.mark.parametrize("factory,switch_off", [
    (functools.partial(nn.BatchNorm2d, track_running_stats=False), False),
    (functools.partial(nn.BatchNorm2d, momentum=None), False),
    (nn.BatchNorm2d, True),
], ids=["untracked", "momentum-none", "tracking-switched-off"])
@pytest.mark.parametrize("kind", ["unet", "patch"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_batch_norm_settings_pick_the_statistics_torch_picks(factory, switch_off, kind, train):
    """Batch or running statistics, and whether the running ones (and the batch count) move,
    as torch's BatchNorm decides: output, gradients and buffers against the reference in
    float64, after a training step has moved the running statistics off their defaults."""
    torch.manual_seed(0)
    ours, theirs = network_pair(kind, factory)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    theirs64 = copy.deepcopy(theirs).double()
    for net in (ours, theirs64):  # running statistics away from (0, 1)
        net.train()(x.to(next(net.parameters()).dtype) * 3 + 0.5)
        if switch_off:
            _tracking_switched_off(net)
    compare_networks(ours, theirs64, x, train, f"{kind} train={train}")


def test_a_batch_count_without_running_statistics_counts_as_torchs():
    """Running statistics deleted, the batch count kept: torch's training forward still counts
    the batch (its three buffers are not all present or all absent: the reference forward)."""
    torch.manual_seed(0)
    ours, theirs = network_pair("patch")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for net in (ours, theirs):
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean = m.running_var = None
        net.train()(x)
    counts = {k: v for k, v in theirs.state_dict().items() if k.endswith("num_batches_tracked")}
    assert counts and all(v.item() == 1 for v in counts.values())
    for name, count in counts.items():
        assert torch.equal(ours.state_dict()[name], count), name


# --- fastp2p.nn.checks ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_unet():
    return fastp2p.UNet(3, 3, 5, ngf=4)


@pytest.mark.parametrize("shape,message", [
    ((1, 1, 3, 32, 32), "expects a 4-D tensor (N, C, H, W), got shape (1, 1, 3, 32, 32)"),
    ((1, 1, 32, 32), "expects 3 input channels, got 1 (shape (1, 1, 32, 32)); repeat the one "
                     "channel with x.expand(-1, 3, -1, -1)"),
    ((1, 3, 32, 48), "multiples of 32, got 32x48"),
    ((1, 3, 48, 40), "got 48x40; resize or crop the input (e.g. to 64x32)"),
    ((1, 3, 0, 32), "positive multiples of 32, got 0x32"),
], ids=["rank-5", "one-channel", "width", "nearest", "empty-height"])
def test_unet_input_errors_say_what_to_do(tiny_unet, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_unet(torch.rand(shape) * 2 - 1)


@pytest.mark.parametrize("kind", ["unet", "patch"])
def test_under_autocast_an_input_of_another_dtype_is_taken(kind):
    """Autocast casts each op's inputs itself: a bfloat16 batch into float32 parameters, as the
    reference takes it, within the bf16 bound of the reference's float32 output."""
    torch.manual_seed(0)
    ours, theirs = network_pair(kind)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = theirs.eval()(x)
        with torch.autocast("cpu", torch.bfloat16):
            out = ours.eval()(x.bfloat16())
    assert relative_error(out.float(), expected) <= BF16_NETWORK


def test_a_patch_discriminator_names_the_one_channel_fix():
    with pytest.raises(ValueError, match=re.escape("x.expand(-1, 6, -1, -1)")):
        fastp2p.PatchDiscriminator(6, 4, 2)(torch.rand(1, 1, 32, 32))


# --- fastp2p.nn.discriminators, fastp2p.nn.output_format -----------------------------------------

@pytest.mark.parametrize("kind", ["patch", "pixel"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["nchw", "channels_last"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_a_discriminator_returns_the_references_strides(kind, norm, memory_format, train):
    """The logit map with the strides the reference's returns (a one-channel map is dense in
    both formats: only its strides tell them apart), and its values."""
    torch.manual_seed(0)
    ours, theirs = network_pair(kind, reference.get_norm_layer(norm))
    ours.train(train), theirs.train(train)
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).contiguous(memory_format=memory_format)
    with torch.no_grad():
        out, expected = ours(x), theirs(x)
    assert out.stride() == expected.stride(), f"{out.stride()} != {expected.stride()}"
    assert_close(out, expected, FP32_NETWORK)


@pytest.mark.parametrize("kind", ["patch", "pixel"])
def test_a_plain_batch_runs_the_fused_discriminator_forward(kind, monkeypatch):
    """Not the reference forward (same values, slower): that is for the calls the fused ops
    cannot serve."""
    torch.manual_seed(0)
    ours, theirs = network_pair(kind)
    base = type(theirs)
    calls, original = [], base.forward
    monkeypatch.setattr(base, "forward", lambda self, x: calls.append(1) or original(self, x))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for train in (True, False):
        ours.train(train)
        ours(x).sum().backward()
    assert not calls
