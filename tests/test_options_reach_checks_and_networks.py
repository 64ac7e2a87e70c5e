"""Options that reach the checks and the networks as they say: --gpu_ids forms the reference
accepts, the U-Net's multiple in every cropping --preprocess mode, a PatchGAN against the
smaller side of the first image, the largest side --aspect_ratio may make, and the model options
(--no_dropout, --norm, --netD pixel, --input_nc, --init_gain) in the networks train builds."""
from types import SimpleNamespace

import pytest
import torch

import fastp2p
from fastp2p.cli import main
from fastp2p.option_types import MAX_LOAD_SIZE
from fastp2p.patchgan_sizes import most_patch_layers
from fastp2p.train import networks
from fastp2p.train.image_sizes import (aspect_ratio_size, check_options_fit_unet,
                                       check_patchgan_fits_first_image)
from helpers.train_helpers import applied_options, parsed_options


def test_gpu_ids_minus_one_with_device_cpu_says_the_same_and_is_accepted():
    for command in ("train", "test"):
        args, _ = applied_options(command, "--gpu_ids", "-1", "--device", "cpu")
        assert args.device == "cpu"


def test_gpu_ids_with_empty_items_take_the_ids_given(monkeypatch):
    """A trailing comma names no extra GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert applied_options("train", "--gpu_ids=0,")[0].device == "cuda:0"
    assert applied_options("test", "--gpu_ids=-1,")[0].device == "cpu"


@pytest.mark.parametrize("command", ["train", "test"])
@pytest.mark.parametrize("gpu_ids", ["", " ", ","])
def test_gpu_ids_naming_no_id_are_refused(command, gpu_ids):
    """An empty --gpu_ids (a script's empty "$IDS") ran on the CPU without a word, where
    --gpu_ids x is refused; the reference fails on int('')."""
    with pytest.raises(ValueError, match=f"--gpu_ids takes comma-separated integers .*, got "
                                         f"{gpu_ids!r}"):
        applied_options(command, f"--gpu_ids={gpu_ids}")


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "scale_width_and_crop"])
def test_every_cropping_mode_needs_a_crop_the_unet_takes(preprocess):
    args = parsed_options("train", "--preprocess", preprocess, "--netG", "unet_32",
                          "--load_size", "96", "--crop_size", "48")
    with pytest.raises(ValueError, match="--crop_size 48 must be a multiple of 32 for --netG "
                                         "unet_32"):
        check_options_fit_unet(args)
    check_options_fit_unet(parsed_options("train", "--preprocess", preprocess, "--netG", "unet_32",
                                  "--load_size", "96", "--crop_size", "64"))


@pytest.mark.parametrize("preprocess", ["scale_width", "none"])
@pytest.mark.parametrize("height,width", [(32, 256), (256, 32)])
def test_the_patchgan_is_checked_against_the_smaller_side_of_the_first_image(preprocess, height,
                                                                            width):
    """A 32-pixel side takes 3 layers whatever the other side: with scale_width the width is
    --load_size (checked from the options) and the height the image's."""
    args = SimpleNamespace(preprocess=preprocess, netD="n_layers", n_layers_D=4)
    with pytest.raises(ValueError, match=r"--netD n_layers --n_layers_D 4 leaves no logit map of "
                                         r"32-pixel sides .* at most --n_layers_D 3"):
        check_patchgan_fits_first_image(args, height, width, "a.png")
    check_patchgan_fits_first_image(SimpleNamespace(preprocess=preprocess, netD="n_layers",
                                                    n_layers_D=3), height, width, "a.png")


def test_most_patch_layers_is_minus_one_below_a_three_pixel_side():
    assert [most_patch_layers(side) for side in (1, 2, 3, 5, 6)] == [-1, -1, 0, 0, 1]


def test_an_aspect_ratio_may_make_a_side_of_exactly_the_largest_size():
    assert aspect_ratio_size(MAX_LOAD_SIZE // 2, 8, 2.0) == (8, MAX_LOAD_SIZE)
    assert aspect_ratio_size(8, MAX_LOAD_SIZE // 2, 0.5) == (MAX_LOAD_SIZE, 8)
    with pytest.raises(ValueError, match="saved sides are limited to 32768"):
        aspect_ratio_size(MAX_LOAD_SIZE // 2 + 1, 8, 2.0)


def test_no_command_prints_the_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: fastp2p" in capsys.readouterr().out


def _model_options(**changes):
    options = dict(netG="unet_32", ngf=4, ndf=4, netD="basic", n_layers_D=3, input_nc=3,
                   output_nc=3, norm="batch", no_dropout=False, init_type="normal",
                   init_gain=0.02)
    return SimpleNamespace(**{**options, **changes})


@pytest.mark.parametrize("changes,config", [
    ({}, {"norm": "batch", "use_dropout": True}),
    ({"no_dropout": True}, {"norm": "batch", "use_dropout": False}),
    ({"norm": "instance"}, {"norm": "instance", "use_dropout": True}),
    ({"norm": "none", "no_dropout": True}, {"norm": "none", "use_dropout": False}),
    ({"norm": "syncbatch"}, {"norm": "batch", "use_dropout": True}),  # converted later
])
def test_the_generator_is_built_with_norm_and_dropout_as_given(changes, config):
    generator = networks.generator_from_options(_model_options(**changes), torch.device("cpu"))
    assert {key: generator.config()[key] for key in config} == config


@pytest.mark.parametrize("netD,kind", [("basic", fastp2p.PatchDiscriminator),
                                       ("n_layers", fastp2p.PatchDiscriminator),
                                       ("pixel", fastp2p.PixelDiscriminator)])
def test_the_discriminator_is_the_one_netD_names_on_both_images_channels(netD, kind):
    args = _model_options(netD=netD, n_layers_D=2, input_nc=1, output_nc=3, norm="instance")
    discriminator = networks.discriminator_from_options(args, torch.device("cpu"))
    assert type(discriminator) is kind
    assert discriminator.config()["input_nc"] == 4 and discriminator.config()["norm"] == "instance"
    if netD != "pixel":
        assert discriminator.config()["n_layers"] == (2 if netD == "n_layers" else 3)


@pytest.mark.parametrize("gain", [0.02, 0.5])
def test_init_gain_scales_the_initial_weights(gain):
    torch.manual_seed(0)
    generator = networks.generator_from_options(_model_options(init_gain=gain),
                                                torch.device("cpu"))
    weights = torch.cat([p.detach().flatten() for name, p in generator.named_parameters()
                         if name.endswith("weight") and p.dim() == 4])
    assert weights.std().item() == pytest.approx(gain, rel=0.1)


def test_a_build_failure_other_than_memory_is_not_called_a_memory_error(monkeypatch):
    def broken(network, *args, **kwargs):
        raise RuntimeError("a bug, not an allocation")
    monkeypatch.setattr(fastp2p, "init_weights", broken)
    with pytest.raises(RuntimeError, match="a bug, not an allocation"):
        networks.generator_from_options(_model_options(), torch.device("cpu"))


def test_a_patchgan_file_of_more_than_3_layers_names_n_layers():
    saved = networks.options_saved_in(fastp2p.PatchDiscriminator(6, ndf=4, n_layers=4)
                                      .state_dict())
    assert saved.options.startswith("--netD n_layers --n_layers_D 4 --ndf 4")


def test_a_cgroup_limit_of_zero_is_no_limit(tmp_path):
    zero, limit = tmp_path / "zero", tmp_path / "limit"
    zero.write_text("0\n")
    limit.write_text("1048576\n")
    assert networks.cgroup_memory_limit([zero]) is None
    assert networks.cgroup_memory_limit([zero, limit]) == 1048576
