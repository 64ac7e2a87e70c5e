"""What a checkpoint that does not fit "looks like" is read off the file as it is: the running
statistics that loading drops for the module's InstanceNorms (files of PyTorch < 0.4 have them)
are what tells a BatchNorm file, so a BatchNorm file loaded into an InstanceNorm network is named
a BatchNorm file (it was named norm='none'), and an old InstanceNorm file stays an InstanceNorm
file (statistics without the BatchNorm's affine weight).
"""
import pytest
import torch

import fastp2p

NETWORKS = {
    "UNet": lambda norm, width=4: fastp2p.UNet(3, 3, 5, ngf=width, norm=norm),
    "PatchDiscriminator": lambda norm, width=4: fastp2p.PatchDiscriminator(6, ndf=width,
                                                                           norm=norm),
    "PixelDiscriminator": lambda norm, width=4: fastp2p.PixelDiscriminator(6, ndf=width,
                                                                           norm=norm),
}


def _advice(module, state_dict) -> str:
    with pytest.raises(ValueError) as raised:
        module.load_state_dict(state_dict)
    return str(raised.value).splitlines()[0]


def _with_legacy_instance_norm_stats(net) -> dict:
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
    return state


@pytest.mark.parametrize("network", NETWORKS)
def test_a_batchnorm_file_loaded_into_an_instancenorm_network_is_named_a_batchnorm_file(
        network):
    build = NETWORKS[network]
    advice = _advice(build("instance"), build("batch").state_dict())
    file_part = advice.split("the file looks like ")[1]
    assert file_part.startswith(f"{network}(") and "norm='batch'" in file_part, advice


@pytest.mark.parametrize("network", NETWORKS)
def test_an_old_instancenorm_file_is_named_an_instancenorm_file(network):
    build = NETWORKS[network]
    legacy = _with_legacy_instance_norm_stats(build("instance", width=8))
    advice = _advice(build("instance"), legacy)  # the width differs
    file_part = advice.split("the file looks like ")[1]
    assert "norm='instance'" in file_part and "=8" in file_part, advice
    rebuilt = type(build("instance")).from_checkpoint(legacy)
    assert rebuilt.config() == build("instance", width=8).config()


@pytest.mark.parametrize("network", NETWORKS)
def test_a_batchnorm_file_without_affine_weights_is_named_a_batchnorm_file(network):
    """BatchNorm(affine=False) keeps statistics and a batch count, no weight: a BatchNorm file
    without affine weights (the old InstanceNorm files have no batch count)."""
    state = NETWORKS[network]("batch").state_dict()
    state = {key: value for key, value in state.items()  # the norms' weight and bias dropped
             if not (key.rpartition(".")[2] in ("weight", "bias")
                     and f"{key.rpartition('.')[0]}.running_mean" in state)}
    advice = _advice(NETWORKS[network]("instance"), state)
    assert "norm='BatchNorm2d(affine=False)'" in advice.split("the file looks like ")[1], advice
