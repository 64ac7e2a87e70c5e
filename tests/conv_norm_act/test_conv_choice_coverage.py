"""The per-layer conv benchmark (benchmarks/conv_layer_timing.py) times exactly the layers the
networks look up in the conv choice table: U-Net-256 (ngf 64, num_downs 8) and the 70x70
PatchGAN (ndf 64, n_layers 3, A and B side by side: 6 channels), batch and instance norm, batch
1 and 64, bf16 — so a table a GPU run writes can never silently miss a layer.

The forwards run on fake tensors (no arithmetic) with the real ``fused_conv_dtype`` computing
each key; only the table is replaced by a recorder that answers "not listed" (today's path
runs). The lookup happens before any channel padding (fastp2p.ops.aligned_channels pads inside
the module path's conv, on GPUs): the PatchGAN's first key has the input's 6 channels.
"""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import fastp2p
import fastp2p.nn.discriminators as discriminators_module
import fastp2p.nn.unet as unet_module
from fastp2p.ops.backends import conv_choice
from helpers.benchmark_scripts import load_benchmark_script

TABLE = load_benchmark_script("conv_choice_table")
SIDE, DTYPE = 256, torch.bfloat16


class _RecordedLookups:
    """conv_choice.fused_layers(TABLE)'s stand-in: lists no layer, records every key asked."""

    def __init__(self):
        self.keys = []

    def __contains__(self, key):
        self.keys.append(key)
        return False


@pytest.fixture(scope="module", params=["batch", "instance"])
def networks(request):
    """(norm, U-Net-256, PatchGAN 70x70) in bf16, built once per norm (real parameters: the
    forwards below run on fake tensors)."""
    norm = request.param
    torch.manual_seed(0)
    unet = fastp2p.UNet(3, 3, 8, 64, norm=norm, use_dropout=True).to(DTYPE)
    patchgan = fastp2p.PatchDiscriminator(6, 64, 3, norm=norm).to(DTYPE)
    return norm, unet, patchgan


def _looked_up(monkeypatch, net, channels, batch):
    lookups = _RecordedLookups()
    monkeypatch.delenv("FASTP2P_CONV", raising=False)
    monkeypatch.setattr(conv_choice, "fused_layers", lambda path: lookups)
    monkeypatch.setattr(conv_choice, "conv_fused_backend", lambda device: object())
    for module in (unet_module, discriminators_module):
        monkeypatch.setattr(module, "may_fuse", lambda x, gradient: True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        net(torch.empty(batch, channels, SIDE, SIDE, dtype=DTYPE))
    return [layer for _, _, layer in lookups.keys]  # conv_choice.routed_key's layer_key


@pytest.mark.parametrize("batch", [1, 64])
def test_benchmark_times_every_layer_the_networks_look_up(monkeypatch, networks, batch):
    norm, unet, patchgan = networks
    for net, channels, layers, what in ((unet, 3, TABLE.UNET, "U-Net-256"),
                                        (patchgan, 6, TABLE.PATCHGAN, "PatchGAN")):
        keys = _looked_up(monkeypatch, net, channels, batch)
        timed = [TABLE.entry_key(TABLE.layer_entry(layer, batch, norm, "bfloat16"))
                 for layer in layers]
        assert len(keys) == len(layers), f"{what}: {len(keys)} lookups, {len(layers)} layers"
        missing = set(keys) - set(timed)
        assert not missing, f"{what} {norm} batch {batch}: not benchmarked: {sorted(missing)}"
        assert set(timed) == set(keys), f"{what}: the benchmark times layers never looked up"


def test_the_patchgan_key_sees_the_unpadded_image_channels(monkeypatch, networks):
    _, _, patchgan = networks
    first = _looked_up(monkeypatch, patchgan, 6, 1)[0]
    assert first[2] == (1, 6, SIDE, SIDE) and first[3] == (64, 6, 4, 4)
