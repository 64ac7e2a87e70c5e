"""What train/test --help say of their options: defaults, the modes of --preprocess, and which
of the shared model options a test does not use."""
import argparse

import pytest

from fastp2p.cli import build_parser


def _option_help(command: str) -> dict:
    parser = build_parser()
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    sub = commands.choices[command]
    formatter = sub._get_formatter()
    return {action.option_strings[0]: formatter._expand_help(action)
            for action in sub._actions if action.option_strings and action.help}


@pytest.mark.parametrize("option, why", [
    ("--netD", "it builds no discriminator"), ("--n_layers_D", "it builds no discriminator"),
    ("--ndf", "it builds no discriminator"), ("--init_type", "the weights are loaded"),
    ("--init_gain", "the weights are loaded")])
def test_test_help_marks_the_training_only_model_options(option, why):
    assert _option_help("test")[option].endswith(f"(not used by test: {why})")
    assert "not used by test" not in _option_help("train")[option]


def test_the_options_test_uses_are_not_marked():
    helps = _option_help("test")
    for option in ("--netG", "--ngf", "--norm", "--no_dropout", "--epoch", "--seed"):
        assert "not used by test" not in helps[option]


@pytest.mark.parametrize("command", ["train", "test"])
def test_data_options_name_their_modes_and_defaults(command):
    from fastp2p.data.options import PREPROCESS_MODES

    helps = _option_help(command)
    preprocess = helps["--preprocess"]
    assert all(f"{mode} (" in preprocess for mode in PREPROCESS_MODES)
    assert preprocess.endswith("(default resize_and_crop)")
    assert helps["--direction"].endswith("(default AtoB)")
    assert helps["--dataset_mode"].endswith("(default aligned)")


def test_load_size_default_is_what_each_command_does():
    """test's --load_size follows --crop_size unless given (it said 'default 256')."""
    assert "(default: --crop_size, whole images;" in _option_help("test")["--load_size"]
    assert "(default 256; 64 without --dataroot)" in _option_help("test")["--crop_size"]
    assert _option_help("train")["--load_size"].endswith("(default 286; 72 without --dataroot)")


def test_tracker_group_names_what_each_command_writes_anyway(capsys):
    from fastp2p.cli import main
    for command, written in (("train", "loss_log.csv and the web/ page"),
                             ("test", "the results folder's images and index.html")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"trackers (besides {written}):" in capsys.readouterr().out
