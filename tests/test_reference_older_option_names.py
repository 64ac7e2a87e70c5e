"""The reference's option names before its 2019 renames (`--niter`, `--which_epoch`,
`--loadSize`, ...), which commands written for it then still give, were refused as bare
"unrecognized arguments"; the error now names the option to use instead (QA r55)."""
import pytest

from fastp2p.cli import build_parser, main
from fastp2p.train.reference_options import OLDER_NAMES


def _error_line(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_older_training_names_are_named_with_their_new_ones(capsys):
    line = _error_line(capsys, ["train", "--niter", "5", "--niter_decay=3", "--no_lsgan",
                                "--which_model_netG", "unet_128", "--no_such_option"])
    assert line == ("fastp2p train: error: unrecognized arguments: --niter 5 --niter_decay=3 "
                    "--no_lsgan --which_model_netG unet_128 --no_such_option (the reference's "
                    "older names: --niter is now --n_epochs, --niter_decay is now "
                    "--n_epochs_decay, --no_lsgan is now --gan_mode vanilla, --which_model_netG "
                    "is now --netG)")


def test_older_test_names_are_named_with_their_new_ones(capsys):
    line = _error_line(capsys, ["test", "--which_epoch", "5", "--how_many", "3"])
    assert line.endswith("(the reference's older names: --which_epoch is now --epoch, "
                         "--how_many is now --num_test)"), line


def test_a_command_without_the_new_option_gets_no_hint(capsys):
    """pack has --load_size but no --n_epochs."""
    line = _error_line(capsys, ["pack", "--niter=5", "--loadSize=3"])
    assert line.endswith("unrecognized arguments: --niter=5 --loadSize=3 (the reference's "
                         "older names: --loadSize is now --load_size)"), line


def test_other_unknown_options_get_no_hint(capsys):
    assert _error_line(capsys, ["train", "--nope", "1"]) == \
        "fastp2p train: error: unrecognized arguments: --nope 1"


@pytest.mark.parametrize("old", OLDER_NAMES)
def test_every_new_name_is_a_train_or_test_option_and_no_old_one_is(old):
    subparsers = build_parser()._subparsers._group_actions[0].choices
    options = {*subparsers["train"]._option_string_actions,
               *subparsers["test"]._option_string_actions}
    assert OLDER_NAMES[old].split()[0] in options
    assert old not in options
