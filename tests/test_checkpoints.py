"""Checkpoints written by the reference networks load into fastp2p's and give the same outputs;
PatchDiscriminator.from_checkpoint infers every n_layers, 0 included (three convolutions, as
n_layers 1, but the second keeps ndf channels)."""
import copy

import pytest
import torch

import fastp2p
from fastp2p import reference
from helpers.tolerances import GOLDEN_OUTPUT, assert_close


def _reference_unet(num_downs, ngf, norm, use_dropout):
    return reference.init_weights(reference.UnetGenerator(
        3, 3, num_downs, ngf, reference.get_norm_layer(norm), use_dropout))


def _outputs(net, x, train):
    net.train(train)
    torch.manual_seed(1234)  # the same dropout mask for both networks in train mode
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("use_dropout", [False, True], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("num_downs,ngf", [(5, 4), (6, 3), (7, 8), (8, 4)])
def test_reference_checkpoint_loads_and_matches(tmp_path, num_downs, ngf, norm, use_dropout):
    torch.manual_seed(0)
    theirs = _reference_unet(num_downs, ngf, norm, use_dropout)
    x = torch.rand(2, 3, 2 ** num_downs, 2 ** num_downs) * 2 - 1
    _outputs(theirs, x, train=True)  # moves BatchNorm running stats away from their defaults
    path = tmp_path / "latest_net_G.pth"
    torch.save(theirs.state_dict(), path)

    ours = fastp2p.UNet(3, 3, num_downs, ngf, norm=norm, use_dropout=use_dropout)
    ours.load_state_dict(torch.load(path, weights_only=True))
    inferred = fastp2p.UNet.from_checkpoint(path, use_dropout=use_dropout)
    # Train-mode dropout draws fastp2p's counter-based masks, not torch's global RNG (a documented
    # behaviour change): that case is compared with the same masks in tests/test_fused_networks.py.
    for net in (ours, inferred):
        for train in ((False,) if use_dropout else (False, True)):
            # each train-mode pass moves the running stats: compare against a fresh copy
            expected = _outputs(copy.deepcopy(theirs), x, train)
            assert_close(_outputs(net, x, train), expected, GOLDEN_OUTPUT, f"train={train}")


def test_from_checkpoint_infers_the_configuration():
    torch.manual_seed(0)
    for config in [dict(input_nc=1, output_nc=3, num_downs=7, ngf=8, norm="instance"),
                   dict(input_nc=3, output_nc=2, num_downs=5, ngf=5, norm="batch"),
                   dict(input_nc=3, output_nc=3, num_downs=6, ngf=4, norm="none")]:
        original = fastp2p.UNet(**config)
        loaded = fastp2p.UNet.from_checkpoint(original.state_dict())
        assert loaded.config() == original.config()
        for (k, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k


@pytest.mark.parametrize("n_layers", [1, 3, 4])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_discriminators_from_checkpoint(n_layers, norm):
    patch = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=n_layers, norm=norm)
    assert fastp2p.PatchDiscriminator.from_checkpoint(patch.state_dict()).config() == patch.config()
    pixel = fastp2p.PixelDiscriminator(6, ndf=4, norm=norm)
    assert fastp2p.PixelDiscriminator.from_checkpoint(pixel.state_dict()).config() == pixel.config()


def test_legacy_instance_norm_running_stats_are_dropped():
    """PyTorch < 0.4 saved InstanceNorm running stats; the reference loader deletes them."""
    net = fastp2p.UNet(3, 3, 5, ngf=4, norm="instance")
    state = net.state_dict()
    legacy = dict(state)
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            legacy[f"{name}.running_mean"] = torch.zeros(module.num_features)
            legacy[f"{name}.running_var"] = torch.ones(module.num_features)
    assert len(legacy) > len(state)
    fresh = fastp2p.UNet(3, 3, 5, ngf=4, norm="instance")
    fresh.load_state_dict(legacy)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("network", ["unet", "patchgan"])
def test_batch_norm_files_without_batch_counts_load(tmp_path, network):
    """Files saved before PyTorch 0.4.1 have no num_batches_tracked; torch's BatchNorm loader
    fills it in, so the reference loads them, and so must the drop-in modules."""
    torch.manual_seed(0)
    if network == "unet":
        theirs = reference.UnetGenerator(3, 3, 5, 4, reference.get_norm_layer("batch"), False)
        ours_cls = fastp2p.UNet
    else:
        theirs = reference.NLayerDiscriminator(6, 8, 3, reference.get_norm_layer("batch"))
        ours_cls = fastp2p.PatchDiscriminator
    old = {k: v for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(theirs.state_dict())
    path = tmp_path / "old.pth"
    torch.save(old, path)
    ours = ours_cls.from_checkpoint(path)
    for key, value in theirs.state_dict().items():
        expected = torch.zeros_like(value) if key.endswith("num_batches_tracked") else value
        assert torch.equal(ours.state_dict()[key], expected), key
    missing_statistics = {k: v for k, v in old.items() if not k.endswith("running_var")}
    with pytest.raises(ValueError, match="running_var"):
        ours.load_state_dict(missing_statistics)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(prefix):
    net = fastp2p.UNet(3, 3, 5, ngf=4)
    wrapped = {prefix + k: v for k, v in net.state_dict().items()}
    assert fastp2p.UNet.from_checkpoint(wrapped).config() == net.config()


def test_non_strict_load_keeps_pytorch_semantics():
    net = fastp2p.UNet(3, 3, 5, ngf=4)
    partial = dict(list(net.state_dict().items())[:3])
    result = fastp2p.UNet(3, 3, 5, ngf=4).load_state_dict(partial, strict=False)
    assert result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_patchgan_n_layers_round_trip(tmp_path, n_layers, norm):
    torch.manual_seed(n_layers)
    theirs = reference.NLayerDiscriminator(6, 8, n_layers, reference.get_norm_layer(norm)).eval()
    path = tmp_path / "netD.pth"
    torch.save(theirs.state_dict(), path)
    ours = fastp2p.PatchDiscriminator.from_checkpoint(path).eval()
    assert ours.config() == {"input_nc": 6, "ndf": 8, "n_layers": n_layers, "norm": norm}
    x = torch.randn(2, 6, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    torch.save(ours.state_dict(), path)  # and back from fastp2p's own file
    assert fastp2p.PatchDiscriminator.from_checkpoint(path).config() == ours.config()
