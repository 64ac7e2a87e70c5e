"""Bad input gets a ValueError that says what was expected (DESIGN.md section 7)."""
import re

import numpy as np
import pytest
import torch

import fastp2p


@pytest.fixture(scope="module")
def unet():
    return fastp2p.UNet(3, 3, 5, ngf=4)


@pytest.mark.parametrize("bad_input,message", [
    (torch.rand(3, 32, 32), "4-D tensor"),
    (torch.rand(1, 4, 32, 32), "expects 3 input channels, got 4"),
    (torch.rand(1, 3, 48, 32), "multiples of 32, got 48x32"),
    (torch.rand(1, 3, 32, 32, dtype=torch.float64), "dtype torch.float64 does not match"),
    (torch.ones(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
    ([1, 2, 3], "expects a torch.Tensor"),
], ids=["rank", "channels", "spatial", "dtype", "integer", "not-tensor"])
def test_unet_rejects_bad_input(unet, bad_input, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        unet(bad_input)


def test_unet_accepts_non_contiguous_and_channels_last(unet):
    x = torch.rand(2, 32, 32, 3).permute(0, 3, 1, 2)
    assert unet(x).shape == (2, 3, 32, 32)
    assert unet(x.contiguous(memory_format=torch.channels_last)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_downs=4), "num_downs must be an int >= 5 (the U-Net has at least 5 levels, which "
                        "the reference builds for any smaller num_downs too: pass 5"),
    (dict(ngf=0), "ngf must be a positive int"),
    (dict(ngf=True), "ngf must be a positive int, got True"),
    (dict(ngf=4.0), "ngf must be a positive int, got 4.0"),
    (dict(num_downs=np.True_), "num_downs must be an int >= 5"),
    (dict(norm="group"), "norm must be one of"),
    (dict(norm="batch", norm_layer=torch.nn.BatchNorm2d), "not both"),
    (dict(norm_layer="batch"), "use norm='batch'"),
])
def test_unet_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fastp2p.UNet(**{"input_nc": 3, "output_nc": 3, "num_downs": 8, **kwargs})


def test_numpy_integers_build_the_same_networks_as_python_ints():
    """The reference takes any integral sizes (numpy's from a config file, say); so do these,
    stored as plain ints."""
    sizes = dict(num_downs=np.int64(5), ngf=np.int32(4))
    unet = fastp2p.UNet(np.int64(3), np.int64(3), **sizes)
    assert unet.config_string() == fastp2p.UNet(3, 3, 5, ngf=4).config_string()
    assert type(unet.ngf) is int and type(unet.num_downs) is int
    patch = fastp2p.PatchDiscriminator(np.int64(6), ndf=np.int64(4), n_layers=np.int64(2))
    assert patch.config() == fastp2p.PatchDiscriminator(6, ndf=4, n_layers=2).config()
    pixel = fastp2p.PixelDiscriminator(np.int64(6), ndf=np.int16(4))
    assert pixel.config() == fastp2p.PixelDiscriminator(6, ndf=4).config()
    with pytest.raises(ValueError, match="n_layers must be an int >= 0, got True"):
        fastp2p.PatchDiscriminator(6, n_layers=True)


def test_mismatched_checkpoint_names_keys_and_the_files_configuration():
    saved = fastp2p.UNet(3, 3, 6, ngf=4, norm="instance").state_dict()
    with pytest.raises(ValueError) as err:
        fastp2p.UNet(3, 3, 5, ngf=4, norm="batch").load_state_dict(saved)
    text = str(err.value)
    assert "missing" in text and "unexpected" in text
    assert "model.model.1.model.2.running_mean" in text
    assert "num_downs=6" in text and "norm='instance'" in text
    assert "from_checkpoint" in text


def test_wrong_shape_checkpoint_is_reported():
    saved = fastp2p.UNet(3, 3, 5, ngf=8).state_dict()
    with pytest.raises(ValueError, match=r"shape mismatch: model\.model\.0\.weight: "
                                         r"file \(8, 3, 4, 4\) vs module \(4, 3, 4, 4\)"):
        fastp2p.UNet(3, 3, 5, ngf=4).load_state_dict(saved)


def test_a_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "weird.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="is not a state_dict"):
        fastp2p.UNet.from_checkpoint(path)


def test_a_checkpoint_of_another_network():
    with pytest.raises(ValueError, match="no U-Net outermost conv key"):
        fastp2p.UNet.from_checkpoint(fastp2p.PatchDiscriminator(6, ndf=4).state_dict())


def test_patchgan_input_too_small():
    with pytest.raises(ValueError, match="too small"):
        fastp2p.PatchDiscriminator(6, ndf=4, n_layers=3)(torch.rand(1, 6, 16, 16))
    scores = fastp2p.PatchDiscriminator(6, ndf=4, n_layers=3)(torch.rand(1, 6, 32, 32))
    assert scores.shape == (1, 1, 2, 2)


def test_discriminator_channel_check():
    with pytest.raises(ValueError, match="expects 6 input channels, got 3"):
        fastp2p.PixelDiscriminator(6, ndf=4)(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("call,message", [
    (lambda: fastp2p.GANLoss("hinge"), "gan_mode must be one of"),
    (lambda: fastp2p.GANLoss("vanilla")(torch.zeros(2, 1, 3, 3, dtype=torch.long), True),
     "floating-point"),
    (lambda: fastp2p.init_weights(torch.nn.Conv2d(1, 1, 1), "uniform"), "init_type must be one of"),
])
def test_loss_and_init_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
