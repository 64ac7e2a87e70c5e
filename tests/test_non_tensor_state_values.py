"""Checkpoint loading: PatchDiscriminator.from_checkpoint infers every n_layers from the
reference NLayerDiscriminator's files, 0 included (three convolutions, as n_layers 1, but the
second keeps ndf channels); a state_dict holding anything but tensors is refused with a one-line
ValueError naming the key, by from_checkpoint (path or mapping) and load_state_dict alike."""
import pytest
import torch

import fastp2p
from fastp2p import reference


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


NETWORKS = {
    "UNet": lambda: fastp2p.UNet(3, 3, 5, 4),
    "PatchDiscriminator": lambda: fastp2p.PatchDiscriminator(6, 4, 2),
    "PixelDiscriminator": lambda: fastp2p.PixelDiscriminator(6, 4),
}
BAD_VALUES = {"list": [[1.0]], "int": 3, "None": None, "string": "weights"}


def _with_bad_value(net, bad_value, first_key):
    state = net.state_dict()
    key = next(iter(state)) if first_key else list(state)[-1]
    state[key] = bad_value
    return state, key


def _assert_refused(call, key, value):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert repr(key) in message and type(value).__name__ in message, message
    assert "net.state_dict()" in message


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize("first_key", [True, False], ids=["first_key", "last_key"])
def test_non_tensor_values_are_refused_naming_the_key(tmp_path, name, bad, first_key):
    net = NETWORKS[name]()
    cls = type(net)
    state, key = _with_bad_value(net, BAD_VALUES[bad], first_key)
    path = tmp_path / "net.pth"
    torch.save(state, path)
    value = BAD_VALUES[bad]
    _assert_refused(lambda: cls.from_checkpoint(path), key, value)
    _assert_refused(lambda: cls.from_checkpoint(state), key, value)
    _assert_refused(lambda: NETWORKS[name]().load_state_dict(state), key, value)
    _assert_refused(lambda: NETWORKS[name]().load_state_dict(state, strict=False), key, value)
