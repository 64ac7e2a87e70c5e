"""An InstanceNorm that holds running buffers with track_running_stats switched off (after
construction, or given buffers later): torch hands the buffers to F.instance_norm, which updates
them in every forward, train or eval; the fused path left them as they were. The networks now
run their reference forward for such a norm; buffers and outputs against the reference."""
import copy
import functools

import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p import reference
from helpers.tolerances import FP32_NETWORK, assert_close

TRACKING = functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=True)
NETWORKS = {
    "unet": (lambda nl: fastp2p.UNet(3, 3, 5, 4, norm_layer=nl),
             lambda nl: reference.UnetGenerator(3, 3, 5, 4, nl), 3),
    "patch": (lambda nl: fastp2p.PatchDiscriminator(6, 4, 3, norm_layer=nl),
              lambda nl: reference.NLayerDiscriminator(6, 4, 3, nl), 6),
    "pixel": (lambda nl: fastp2p.PixelDiscriminator(6, 4, norm_layer=nl),
              lambda nl: reference.PixelDiscriminator(6, 4, nl), 6),
}


def _pair(kind, norm_layer):
    build_ours, build_theirs, channels = NETWORKS[kind]
    torch.manual_seed(0)
    theirs = build_theirs(norm_layer)
    ours = build_ours(norm_layer)
    ours.load_state_dict(theirs.state_dict())
    return ours, copy.deepcopy(theirs).double(), channels


def _instance_norms(net):
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


def _images(channels, seed=1):
    return torch.rand(2, channels, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _assert_same_buffers(ours, theirs64, what):
    pairs = list(zip(_instance_norms(ours), _instance_norms(theirs64)))
    assert pairs
    for mine, expected in pairs:
        for name in ("running_mean", "running_var"):
            assert_close(getattr(mine, name), getattr(expected, name), FP32_NETWORK,
                         f"{what} {name}")


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_buffers_kept_with_tracking_switched_off_are_updated_as_torch_does(kind, train):
    ours, theirs64, channels = _pair(kind, TRACKING)
    for net in (ours, theirs64):
        net.train(train)
        for norm in _instance_norms(net):
            norm.track_running_stats = False
    x = _images(channels)
    assert_close(ours(x), theirs64(x.double()), FP32_NETWORK, f"{kind} output")
    assert any(n.running_mean.abs().max() > 0 for n in _instance_norms(theirs64))
    _assert_same_buffers(ours, theirs64, kind)


@pytest.mark.parametrize("kind", NETWORKS)
def test_buffers_given_after_a_fused_call_are_seen(kind):
    """The walk that lists the layers is cached; giving a norm buffers invalidates it."""
    ours, theirs64, channels = _pair(kind, nn.InstanceNorm2d)
    ours(_images(channels, seed=2))  # fused, cached walk
    for net in (ours, theirs64):
        for norm in _instance_norms(net):
            norm.running_mean = torch.zeros(norm.num_features, dtype=next(net.parameters()).dtype)
            norm.register_buffer("running_var", torch.ones_like(norm.running_mean))
    x = _images(channels)
    assert_close(ours(x), theirs64(x.double()), FP32_NETWORK, f"{kind} output")
    _assert_same_buffers(ours, theirs64, kind)


def test_the_fused_forward_returns_when_the_buffers_go(monkeypatch):
    import fastp2p.nn.discriminators as discriminators
    calls = []
    fused = discriminators.sequential_forward
    monkeypatch.setattr(discriminators, "sequential_forward",
                        lambda seq, x: calls.append(1) or fused(seq, x))
    ours, _, channels = _pair("patch", TRACKING)
    for norm in _instance_norms(ours):
        norm.track_running_stats = False
    ours(_images(channels))
    assert calls == []
    for norm in _instance_norms(ours):
        norm.register_buffer("running_mean", None)
        norm.register_buffer("running_var", None)
    ours(_images(channels))
    assert calls == [1]
