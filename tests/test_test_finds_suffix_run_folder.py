"""`fastp2p test --suffix S` where S names options (`{netG}_size{load_size}`, README's
example): it looked for the folder with test's own values, before the defaults were resolved
and the run's options taken (--load_size is --crop_size in test, and the --ngf train was
given is only in the run's train_opt.txt), and said "train first". It now finds the folder
named with test's own values (the reference's rule), else the one train named, or says in one
line which values the suffix was formatted with."""
import shutil

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


@pytest.fixture(scope="module")
def sized_runs(tmp_path_factory):
    """(DATAROOT, a checkpoints folder with the runs "tiny_size32" and "tiny_size36"): both
    train_opt.txt format 'size{load_size}' to their own folder's name."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)
    checkpoints = tmp_path_factory.mktemp("sized")
    for load_size in ("32", "36"):
        argv = train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html",
                          "--suffix", "size{load_size}")
        argv[argv.index("--load_size") + 1] = load_size
        assert main(argv) == 0
    return data, checkpoints


def _test_size_suffix(data, checkpoints, results) -> int:
    """test with --crop_size 32 and no --load_size: the reference formats the suffix with
    test's own load_size, the crop size, and opens tiny_size32."""
    return main(["test", "--dataroot", str(data), "--checkpoints_dir", str(checkpoints),
                 "--name", "tiny", "--netG", "unet_32", "--ngf", "4", "--crop_size", "32",
                 "--num_threads", "0", "--results_dir", str(results),
                 "--suffix", "size{load_size}"])


def test_the_folder_named_with_tests_own_values_is_found_first(sized_runs, tmp_path):
    data, checkpoints = sized_runs
    assert _test_size_suffix(data, checkpoints, tmp_path) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny_size32"]


def test_tests_own_values_win_over_trains_defaults(sized_runs, tmp_path):
    data, sized = sized_runs
    checkpoints = tmp_path / "checkpoints"
    for name in ("tiny_size32", "tiny_size286"):   # train's default load size names the other
        shutil.copytree(sized / "tiny_size32", checkpoints / name)
    assert _test_size_suffix(data, checkpoints, tmp_path / "results") == 0
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == ["tiny_size32"]


def test_a_weights_only_folder_named_with_tests_values_is_found(sized_runs, tmp_path):
    data, sized = sized_runs
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(sized / "tiny_size32", checkpoints / "tiny_size32")
    (checkpoints / "tiny_size32" / "train_opt.txt").unlink()
    assert _test_size_suffix(data, checkpoints, tmp_path / "results") == 0
    assert (tmp_path / "results" / "tiny_size32" / "test_latest" / "index.html").is_file()


def test_no_folder_found_names_tests_values_and_trains(sized_runs, tmp_path, capsys):
    data, checkpoints = sized_runs
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(checkpoints),
                 "--name", "tiny", "--crop_size", "40", "--results_dir", str(tmp_path),
                 "--suffix", "size{load_size}"]) == 1
    err = capsys.readouterr().err
    assert ("here load_size 40 (test's values) or load_size 286 (train's values where the "
            "command line leaves them out), and 2 folders' train_opt.txt name them") in err, err


def test_a_name_with_glob_characters_finds_its_own_folder(runs, tmp_path, capsys):
    """--name 'ti[n]y' is a file name, not a pattern: its folder 'ti[n]y_x4' is found, beside
    'tiny_x4', which the pattern ti[n]y_* would match instead."""
    data, checkpoints = runs
    both = tmp_path / "checkpoints"
    shutil.copytree(checkpoints / "tiny_x4", both / "tiny_x4")
    shutil.copytree(checkpoints / "tiny_x4", both / "ti[n]y_x4")
    assert main(["test", "--dataroot", str(data), "--checkpoints_dir", str(both),
                 "--name", "ti[n]y", "--netG", "unet_32", "--crop_size", "32",
                 "--num_threads", "0", "--results_dir", str(tmp_path / "results"),
                 "--suffix", "x{ngf}"]) == 0, capsys.readouterr().err
    assert (tmp_path / "results" / "ti[n]y_x4" / "test_latest" / "index.html").is_file()
