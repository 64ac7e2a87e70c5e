"""What train and test do when an option is left out: with --dataroot, the reference
implementation's defaults (options/base_options.py, train_options.py, test_options.py, with
pix2pix_model.py's overrides: --norm batch, --netG unet_256, --gan_mode vanilla, --lambda_L1 100),
so a reference command trains the same run after changing its first word; without --dataroot, the
quick profile's values; and the values each option's choices and type take or refuse."""
import pytest

from fastp2p.train.reference_options import apply_reference_options
from helpers.train_helpers import parsed_options

REFERENCE_MODEL = {
    "netG": "unet_256", "netD": "basic", "n_layers_D": 3, "ngf": 64, "ndf": 64, "norm": "batch",
    "no_dropout": False, "init_type": "normal", "init_gain": 0.02, "epoch": "latest",
    "load_iter": 0, "suffix": "", "model": "pix2pix", "input_nc": 3, "output_nc": 3,
    "checkpoints_dir": "./checkpoints", "name": "experiment_name",
}
REFERENCE_TRAIN = {
    **REFERENCE_MODEL, "gan_mode": "vanilla", "lambda_L1": 100.0, "lr": 0.0002, "beta1": 0.5,
    "batch_size": 1, "n_epochs": 100, "n_epochs_decay": 100, "lr_policy": "linear",
    "lr_decay_iters": 50, "epoch_count": 1, "save_epoch_freq": 5, "save_latest_freq": 5000,
    "display_freq": 400, "continue_train": False, "phase": "train", "load_size": 286,
    "crop_size": 256,
}
REFERENCE_TEST = {
    **REFERENCE_MODEL, "results_dir": "./results", "phase": "test", "eval": False,
    "num_test": 50, "aspect_ratio": 1.0, "load_size": 256, "crop_size": 256,
}
# fastp2p's own options: the same run on any machine unless asked otherwise
OWN_TRAIN = {"device": "auto", "seed": 0, "precision": "fp32", "channels_last": False,
             "graphs": None}
OWN_TEST = {"device": "auto", "seed": 0, "channels_last": True}
QUICK_TRAIN = {"netG": "unet_64", "ngf": 16, "ndf": 16, "lr": 1e-3, "batch_size": 32,
               "n_epochs": 7, "n_epochs_decay": 17, "save_latest_freq": 4000,
               "display_freq": 2000, "load_size": 72, "crop_size": 64}
QUICK_TEST = {"netG": "unet_64", "ngf": 16, "ndf": 16, "eval": True, "load_size": 64,
              "crop_size": 64}


def _values(args, names):
    return {name: getattr(args, name) for name in names}


@pytest.mark.parametrize("command,expected", [("train", {**REFERENCE_TRAIN, **OWN_TRAIN}),
                                              ("test", {**REFERENCE_TEST, **OWN_TEST})])
def test_with_a_dataroot_every_default_is_the_reference_implementations(command, expected):
    args = parsed_options(command, "--dataroot", "d")
    assert _values(args, expected) == expected


@pytest.mark.parametrize("command,quick", [("train", QUICK_TRAIN), ("test", QUICK_TEST)])
def test_without_a_dataroot_only_the_quick_defaults_change(command, quick):
    reference = {**(REFERENCE_TRAIN if command == "train" else REFERENCE_TEST), **quick}
    assert _values(parsed_options(command), reference) == reference


def test_the_default_loss_interval_is_50_steps_and_log_every_sets_it():
    args = parsed_options("train", "--dataroot", "d")
    apply_reference_options(args, "train")
    assert args.log_every == 50
    args = parsed_options("train", "--dataroot", "d", "--log-every", "3")
    apply_reference_options(args, "train")
    assert args.log_every == 3


@pytest.mark.parametrize("option,choices", [
    ("--netD", ("basic", "n_layers", "pixel")),
    ("--norm", ("batch", "instance", "none", "syncbatch")),
    ("--init_type", ("normal", "xavier", "kaiming", "orthogonal")),
    ("--gan_mode", ("vanilla", "lsgan", "wgangp")),
    ("--lr_policy", ("linear", "step", "plateau", "cosine")),
])
def test_every_documented_choice_parses_and_no_other(option, choices, capsys):
    for choice in choices:
        assert getattr(parsed_options("train", option, choice), option[2:]) == choice
    with pytest.raises(SystemExit) as stop:
        parsed_options("train", option, "other")
    assert stop.value.code == 2
    assert f"argument {option}: invalid choice: 'other'" in capsys.readouterr().err


@pytest.mark.parametrize("command,option,value", [
    ("train", "--lr", "-0.1"), ("train", "--lr", "nan"), ("train", "--lr", "inf"),
    ("train", "--beta1", "1"), ("train", "--beta1", "-0.5"),
    ("train", "--batch_size", "0"), ("train", "--n_epochs", "-1"),
    ("train", "--epoch_count", "0"), ("train", "--lr_decay_iters", "0"),
    ("train", "--print_freq", "0"), ("train", "--load_iter", "-1"),
    ("test", "--num_test", "0"), ("test", "--load_iter", "-1"),
])
def test_values_the_runs_cannot_use_are_refused_while_parsing(command, option, value, capsys):
    with pytest.raises(SystemExit) as stop:
        parsed_options(command, "--dataroot", "d", option, value)
    assert stop.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err


def test_zero_epochs_at_the_initial_lr_parse():
    """--n_epochs 0: the whole run is the decay, as the reference allows."""
    assert parsed_options("train", "--n_epochs", "0", "--n_epochs_decay", "3").n_epochs == 0
