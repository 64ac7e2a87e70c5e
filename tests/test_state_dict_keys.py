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


def _state_dict_errors(net, state):
    try:
        return type(net.load_state_dict(state)).__name__, None
    except Exception as error:  # noqa: BLE001 - the test compares what each module raises
        return None, error


@pytest.mark.parametrize("given", ["mapping-proxy", "list-of-pairs", "entry-None"])
def test_what_the_reference_loads_or_refuses_is_loaded_or_refused_alike(given):
    """Any Mapping loads (torch takes one); what torch refuses raises the type it raises."""
    import types
    ours, theirs = fastp2p.UNet(3, 3, 5, 4), reference.UnetGenerator(
        3, 3, 5, 4, reference.get_norm_layer("batch"))
    state = theirs.state_dict()
    given_state = {"mapping-proxy": types.MappingProxyType(state),
                   "list-of-pairs": list(state.items()),
                   "entry-None": {**state, "model.model.0.bias": None}}[given]
    loaded, error = _state_dict_errors(theirs, given_state)
    ours_loaded, ours_error = _state_dict_errors(ours, given_state)
    assert loaded == ours_loaded
    if error is not None:
        assert isinstance(ours_error, type(error)) and isinstance(ours_error, ValueError)
    else:
        assert ours_error is None
        assert all(torch.equal(state[k], v) for k, v in ours.state_dict().items())


class _Wrapper(torch.nn.Module):
    """What DataParallel's state_dict looks like: the network under "module."."""

    def __init__(self, net):
        super().__init__()
        self.module = net


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "module-prefix"])
def test_the_saved_module_versions_reach_torchs_loaders(wrapped):
    """A state_dict's _metadata (each module's version) is what torch's loaders read: a
    BatchNorm of version 2 without num_batches_tracked is a missing key for the reference's
    strict load, as for ours; pre-hooks see the same versions."""
    ours, theirs = fastp2p.UNet(3, 3, 5, 4), reference.UnetGenerator(
        3, 3, 5, 4, reference.get_norm_layer("batch"))
    state = (_Wrapper(theirs) if wrapped else theirs).state_dict()
    # (the reference module loads a wrapped file through its wrapper; fastp2p's takes it)
    loaders = {"ours": ours, "theirs": _Wrapper(theirs) if wrapped else theirs}
    seen = {}
    for name, net in (("ours", ours), ("theirs", theirs)):
        net.model.model[1].model[2]._register_load_state_dict_pre_hook(
            lambda *args, name=name: seen.setdefault(name, dict(args[2])))
        loaders[name].load_state_dict(state)
    assert seen["ours"] == seen["theirs"] == {"version": 2}
    del state[("module." if wrapped else "") + "model.model.1.model.2.num_batches_tracked"]
    for loader in loaders.values():
        with pytest.raises(RuntimeError, match="num_batches_tracked"):
            loader.load_state_dict(state)


def test_module_versions_torch_could_not_read_are_left_out(tmp_path):
    """A crafted or foreign file's _metadata: a version that is no int (torch's BatchNorm
    compares it with 2: a TypeError traceback), an entry that is no mapping. Left out, as if
    not recorded: the file loads, through from_checkpoint and load_state_dict."""
    net = fastp2p.UNet(3, 3, 5, 4)
    state = net.state_dict()
    state._metadata["model.model.1.model.2"] = {"version": "2"}
    state._metadata["model.model.1.model.1"] = 3
    torch.save(state, tmp_path / "net.pth")
    for loaded in (fastp2p.UNet.from_checkpoint(tmp_path / "net.pth"), fastp2p.UNet(3, 3, 5, 4)):
        loaded.load_state_dict(state)
        assert all(torch.equal(loaded.state_dict()[key], value)
                   for key, value in net.state_dict().items())
