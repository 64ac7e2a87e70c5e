"""init_weights behaves like the reference implementation's."""
import pytest
import torch

import fastp2p


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_every_conv_is_reinitialised_and_biases_zeroed(init_type):
    torch.manual_seed(0)
    net = fastp2p.UNet(3, 3, 5, ngf=8, norm="instance")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fastp2p.init_weights(net, init_type, 0.02)
    for name, value in net.state_dict().items():
        if name.endswith("bias"):
            assert torch.count_nonzero(value) == 0, name
        else:
            assert not torch.equal(value, before[name]), name


def test_normal_init_statistics():
    torch.manual_seed(0)
    net = fastp2p.init_weights(fastp2p.PatchDiscriminator(6, ndf=32, norm="batch"), "normal", 0.02)
    conv = net.model[2].weight
    assert abs(conv.mean().item()) < 2e-3 and abs(conv.std().item() - 0.02) < 2e-3
    norm = net.model[3].weight
    assert abs(norm.mean().item() - 1.0) < 0.01 and torch.count_nonzero(net.model[3].bias) == 0


@pytest.mark.parametrize("gain, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-1.0, ValueError),
    ("0.02", TypeError), (None, TypeError), (True, TypeError)],
    ids=["nan", "inf", "negative", "str", "None", "bool"])
@pytest.mark.parametrize("init_type", ["normal", "orthogonal"])
def test_a_bad_init_gain_is_refused_before_any_weight_is_touched(init_type, gain, error):
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(6, ndf=8, norm="batch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(error, match="init_gain"):
        fastp2p.init_weights(net, init_type, gain)
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_a_net_that_is_no_module_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module, got str"):
        fastp2p.init_weights("x", "normal", 0.02)


@pytest.mark.parametrize("gain", [0.0, 1], ids=["zero", "int"])
def test_a_gain_of_zero_or_a_whole_number_is_taken(gain):
    """--init_gain takes 0 (every conv weight 0 with the normal init), and a caller may pass
    an int."""
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(6, ndf=8, norm="batch")
    fastp2p.init_weights(net, "normal", gain)
    assert (torch.count_nonzero(net.model[0].weight) == 0) == (gain == 0)


def test_an_unknown_init_type_is_refused_before_any_weight_is_touched():
    torch.manual_seed(0)
    net = fastp2p.PatchDiscriminator(6, ndf=8, norm="batch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="init_type must be one of .*, got 'uniform'"):
        fastp2p.init_weights(net, "uniform", 0.02)
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name
