"""`fastp2p test --suffix S` where S names options (`{netG}_size{load_size}`, README's
example): it looked for the folder with test's own values, before the defaults were resolved
and the run's options taken (--load_size is --crop_size in test, and the --ngf train was
given is only in the run's train_opt.txt), and said "train first". It now finds the folder
train named, or says in one line which values the suffix was formatted with."""
import pytest

from fastp2p.cli import main
from helpers.train_helpers import train_argv, write_aligned_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(DATAROOT, a checkpoints folder with the runs "tiny_size286" (train's --load_size
    default with --dataroot) and "tiny_x4" (--ngf 4, which test leaves out))."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    no_load_size = train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html",
                              "--suffix", "size{load_size}")
    at = no_load_size.index("--load_size")
    assert main(no_load_size[:at] + no_load_size[at + 2:]) == 0
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html",
                           "--suffix", "x{ngf}")) == 0
    return data, checkpoints


def _test(runs, tmp_path, *options) -> int:
    data, checkpoints = runs
    return main(["test", "--dataroot", str(data), "--checkpoints_dir", str(checkpoints),
                 "--name", "tiny", "--netG", "unet_32", "--crop_size", "32",
                 "--num_threads", "0", "--results_dir", str(tmp_path), *options])


def test_an_option_left_out_is_formatted_with_trains_default(runs, tmp_path, capsys):
    assert _test(runs, tmp_path, "--ngf", "4", "--suffix", "size{load_size}") == 0
    assert (tmp_path / "tiny_size286" / "test_latest" / "index.html").is_file()


def test_an_option_train_was_given_is_read_from_the_folders_file(runs, tmp_path, capsys):
    assert _test(runs, tmp_path, "--suffix", "x{ngf}") == 0
    out = capsys.readouterr().out
    assert "tiny_x4/train_opt.txt; not the defaults: --ngf 4" in out, out
    assert (tmp_path / "tiny_x4" / "test_latest" / "index.html").is_file()


def test_a_folder_not_found_is_said_with_the_values_used(runs, tmp_path, capsys):
    assert _test(runs, tmp_path, "--suffix", "size{load_size}", "--load_size", "40") == 1
    err = capsys.readouterr().err
    assert "--suffix 'size{load_size}' names options, here load_size 40" in err, err
    assert "train first" not in err, err
