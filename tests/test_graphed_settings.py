"""fastp2p.graphed keys its captures on every submodule setting a forward bakes into the captured
kernels and folded weights (BatchNorm / InstanceNorm eps and momentum, Dropout p, LeakyReLU
negative_slope, a convolution's stride and padding, ...), not only on the train/eval flags: a
changed ``bn.eps`` is a new capture, not a replay of the graph made with the old one.

On the CPU: the signature function itself (changes with each setting, and with nothing a forward
or an optimizer step does), and GraphedModule's choice between replay and capture, driven
through a stand-in for the CUDA graph (the replays themselves need a GPU: tests/test_graphed.py).
"""
import pytest
import torch
import torch.nn as nn

import fastp2p
from fastp2p.nn.graph_replay import _is_setting, _ModuleTensors
from helpers.graph_stand_in import OnCuda, capture_on_the_cpu


def _networks():
    torch.manual_seed(0)
    return {"unet-batch-dropout": fastp2p.UNet(3, 3, 6, 4, use_dropout=True),
            "unet-instance": fastp2p.UNet(3, 3, 5, 4, norm="instance"),
            "patchgan": fastp2p.PatchDiscriminator(3, 4, n_layers=2),
            "pixelgan": fastp2p.PixelDiscriminator(3, 4)}


def _image(channels=3, seed=1):
    return torch.rand(2, channels, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _other_value(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, tuple):
        return tuple(_other_value(v) for v in value) if value else (1,)
    return 0.5  # None (e.g. an InstanceNorm's momentum)


# The settings the review named, and the module kinds that have them.
NAMED_SETTINGS = [(nn.BatchNorm2d, "eps"), (nn.BatchNorm2d, "momentum"), (nn.Dropout, "p"),
                  (nn.LeakyReLU, "negative_slope"), (nn.InstanceNorm2d, "eps"),
                  (nn.InstanceNorm2d, "momentum"), (nn.InstanceNorm2d, "affine"),
                  (nn.Conv2d, "stride"), (nn.Conv2d, "padding"),
                  (nn.ConvTranspose2d, "padding"), (nn.ReLU, "inplace")]


@pytest.mark.parametrize("kind,name", NAMED_SETTINGS,
                         ids=[f"{k.__name__}.{n}" for k, n in NAMED_SETTINGS])
def test_the_named_settings_change_the_signature(kind, name):
    seen = 0
    for net in _networks().values():
        tensors, x = _ModuleTensors(net.eval()), _image()
        base = tensors.signature(x)
        for m in net.modules():
            if type(m) is not kind:
                continue
            value = getattr(m, name)
            setattr(m, name, _other_value(value))
            assert tensors.signature(x) != base, f"{type(m).__name__}.{name}"
            setattr(m, name, value)
            assert tensors.signature(x) == base
            seen += 1
    assert seen, f"no {kind.__name__} in the networks"


@pytest.mark.parametrize("net_name", list(_networks()))
def test_every_setting_of_every_submodule_changes_the_signature(net_name):
    """Each public plain value of each submodule, changed alone, changes the signature; set
    back, the signature is the old one again (the old capture is replayed)."""
    net = _networks()[net_name].eval()
    tensors, x = _ModuleTensors(net), _image()
    base = tensors.signature(x)
    count = 0
    for m in net.modules():
        for name, value in list(vars(m).items()):
            if not _is_setting(name, value):
                continue
            setattr(m, name, _other_value(value))
            assert tensors.signature(x) != base, f"{type(m).__name__}.{name}"
            setattr(m, name, value)
            assert tensors.signature(x) == base, f"{type(m).__name__}.{name} set back"
            count += 1
    assert count > 3 * len(list(net.modules()))  # training and more per module


def test_a_deleted_setting_reads_as_absent_and_is_still_watched_when_set_again():
    net = _networks()["unet-batch-dropout"].eval()
    tensors, x = _ModuleTensors(net), _image()
    base = tensors.signature(x)
    norm = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    del norm.momentum
    absent = tensors.signature(x)
    assert absent != base and tensors.signature(x) == absent
    norm.momentum = 0.1
    assert tensors.signature(x) == base
    norm.momentum = 0.3
    assert tensors.signature(x) not in (base, absent)


@pytest.mark.parametrize("net_name", list(_networks()))
def test_nothing_but_a_setting_changes_the_signature(net_name):
    """Forwards (train: batch statistics, running statistics, dropout offset; eval with and
    without autograd: the folding caches), an optimizer step and load_state_dict change tensors
    (``state()``'s business), never the signature: no capture per call."""
    net = _networks()[net_name]
    tensors = _ModuleTensors(net)
    x = _image(net.input_nc if hasattr(net, "input_nc") else 3)
    net.train()
    train_signature = tensors.signature(x)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        net(x).mean().backward()
        optimizer.step()
        with torch.no_grad():
            net(x)
        assert tensors.signature(x) == train_signature
    net.eval()
    eval_signature = tensors.signature(x)
    with torch.no_grad():
        net(x)
    net(x.requires_grad_()).sum().backward()
    net.load_state_dict(net.state_dict())
    fastp2p.graphed(net)(x.detach())  # the CPU fallback
    assert tensors.signature(x) == eval_signature != train_signature


def test_graphed_captures_again_for_a_changed_setting_and_replays_for_the_old_one(monkeypatch):
    net = _networks()["unet-batch-dropout"].eval()
    captured = capture_on_the_cpu(monkeypatch, lambda: next(
        m for m in net.modules() if isinstance(m, nn.BatchNorm2d)).eps)
    translate = fastp2p.graphed(net)
    x = _image().as_subclass(OnCuda)
    norm = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    translate(x)
    translate(x)
    assert captured == [1e-5]
    norm.eps = 1e-2
    translate(x)  # the old graph has eps 1e-5 in its kernels and folded weights: capture
    assert captured == [1e-5, 1e-2]
    norm.eps = 1e-5
    translate(x)
    assert captured == [1e-5, 1e-2]  # the first capture again, replayed
    replays = sorted(c.graph.replays for c in translate._captures.values())
    assert replays == [0, 2]
