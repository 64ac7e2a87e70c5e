"""state_dict keys, shapes and dtypes are exactly the reference implementation's."""
import pytest
import torch

import fastp2p
from fastp2p import reference

KEY_LISTS = {
    "unet256_keys.txt": lambda: fastp2p.UNet(3, 3, 8, ngf=64, norm="batch"),
    "unet256_instance_keys.txt": lambda: fastp2p.UNet(3, 3, 8, ngf=64, norm="instance"),
    "patchgan_n3_keys.txt": lambda: fastp2p.PatchDiscriminator(6, ndf=64, n_layers=3, norm="batch"),
    "pixelgan_keys.txt": lambda: fastp2p.PixelDiscriminator(6, ndf=64, norm="batch"),
}


def _listing(module):
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in module.state_dict().items()]


def _read_key_list(path):
    rows = []
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    return rows


@pytest.mark.parametrize("listing", sorted(KEY_LISTS))
def test_state_dict_matches_reference_key_list(reference_file, listing):
    assert _listing(KEY_LISTS[listing]()) == _read_key_list(reference_file(listing))


@pytest.mark.parametrize("use_dropout", [False, True], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("num_downs,ngf", [(5, 3), (6, 4), (7, 8), (8, 16)])
def test_unet_keys_match_reference_module(num_downs, ngf, norm, use_dropout):
    ours = fastp2p.UNet(3, 2, num_downs, ngf=ngf, norm=norm, use_dropout=use_dropout)
    theirs = reference.UnetGenerator(3, 2, num_downs, ngf, reference.get_norm_layer(norm),
                                     use_dropout)
    assert _listing(ours) == _listing(theirs)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("n_layers", [1, 2, 3, 5])
def test_patchgan_keys_match_reference_module(n_layers, norm):
    ours = fastp2p.PatchDiscriminator(4, ndf=8, n_layers=n_layers, norm=norm)
    theirs = reference.NLayerDiscriminator(4, 8, n_layers, reference.get_norm_layer(norm))
    assert _listing(ours) == _listing(theirs)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_pixelgan_keys_match_reference_module(norm):
    ours = fastp2p.PixelDiscriminator(6, ndf=8, norm=norm)
    theirs = reference.PixelDiscriminator(6, 8, reference.get_norm_layer(norm))
    assert _listing(ours) == _listing(theirs)


@pytest.mark.parametrize("norm_layer", [torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d,
                                        reference.get_norm_layer("instance")],
                         ids=["BatchNorm2d", "InstanceNorm2d", "partial-instance"])
def test_norm_layer_factories_as_the_reference_passes_them(norm_layer):
    ours = fastp2p.UNet(3, 3, 5, ngf=4, norm_layer=norm_layer)
    theirs = reference.UnetGenerator(3, 3, 5, 4, norm_layer)
    assert _listing(ours) == _listing(theirs)


@pytest.mark.parametrize("change", ["missing-key", "wrong-shape"])
def test_a_state_dict_that_does_not_fit_raises_what_torch_raises(change):
    """Code written for the reference module catches torch's RuntimeError from
    load_state_dict; fastp2p's message is its own, its type a RuntimeError as well."""
    ours, theirs = fastp2p.UNet(3, 3, 5, 4), reference.UnetGenerator(
        3, 3, 5, 4, reference.get_norm_layer("batch"))
    state = theirs.state_dict()
    if change == "missing-key":
        state.pop("model.model.0.weight")
    else:
        state["model.model.0.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(RuntimeError):
        theirs.load_state_dict(state)
    with pytest.raises(RuntimeError, match="model.model.0.weight"):
        ours.load_state_dict(state)
