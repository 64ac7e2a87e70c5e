"""A state_dict holding anything but tensors is refused with a one-line ValueError naming the
key, by from_checkpoint (path or mapping) and load_state_dict alike; with strict=False an extra
non-tensor entry is reported as the reference reports it."""
import pytest
import torch

import fastp2p
from fastp2p.reference import NLayerDiscriminator, UnetGenerator


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


@pytest.mark.parametrize("networks", [
    lambda: (fastp2p.UNet(3, 3, 5, ngf=4), UnetGenerator(3, 3, 5, ngf=4)),
    lambda: (fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2), NLayerDiscriminator(6, 4, 2)),
], ids=["unet", "patchgan"])
def test_strict_false_reports_an_extra_non_tensor_entry_as_the_reference_does(networks):
    ours, theirs = networks()
    state = {**theirs.state_dict(), "epoch": 3}
    assert ours.load_state_dict(state, strict=False) == theirs.load_state_dict(state, strict=False)
    with pytest.raises(ValueError, match="'epoch' holds an int"):
        ours.load_state_dict(state)   # strict: the one-line error naming the entry
