"""`fastp2p test` with model options other than the run was trained with: its first error names
the options the generator's file was saved with, before the data and the image sizes are
checked (QA r39: a unet_32 / ngf 4 run on a 32-pixel pack took three runs of errors, a
--load_size, then the --netG of a --crop_size, before the load named --netG and --ngf). The run
here has no train_opt.txt, whose options test would take instead (a downloaded checkpoint)."""
import shutil

import pytest

from fastp2p.cli import main
from helpers.train_helpers import one_line

SAVED_WITH = ("was saved by other model options: pass --netG unet_32 --ngf 4 --norm batch "
              "--input_nc 3 --output_nc 3, as it was trained with")


def _test_argv(dataroot, trained, results, *extra):
    return ["test", "--dataroot", str(dataroot), "--checkpoints_dir", str(trained), "--name",
            "tiny", "--num_threads", "0", "--results_dir", str(results), *extra]


@pytest.fixture(scope="module")
def untold(trained, tmp_path_factory):
    """``trained`` without its options file."""
    checkpoints = tmp_path_factory.mktemp("untold")
    shutil.copytree(trained, checkpoints, dirs_exist_ok=True)
    (checkpoints / "tiny" / "train_opt.txt").unlink()
    return checkpoints


@pytest.fixture(scope="module")
def packed(data, tmp_path_factory):
    """``data``'s test split packed at load_size 32 (its images' size)."""
    out = tmp_path_factory.mktemp("packed")
    assert main(["pack", str(data), str(out), "--load_size", "32", "--phase", "test",
                 "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("sizes", [(), ("--load_size", "32", "--crop_size", "32")],
                         ids=["load_size-above-the-pack", "crop_size-below-unet_256"])
def test_the_first_error_names_the_saved_model_options(packed, untold, tmp_path, capsys,
                                                       sizes):
    """The default --netG unet_256 --ngf 64 with the pack's --load_size refused (the default
    256) or with a --crop_size unet_256 cannot take (32): the file's options come first."""
    assert main(_test_argv(packed, untold, tmp_path / "results", *sizes)) == 1
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert first == f"fastp2p test: error: {untold / 'tiny' / 'latest_net_G.pth'} {SAVED_WITH}", err
    assert not (tmp_path / "results").exists()


def test_with_the_saved_options_the_size_errors_follow(packed, untold, tmp_path, capsys):
    """The options the file names load it; what is left is the pack's --load_size."""
    argv = _test_argv(packed, untold, tmp_path / "results", "--netG", "unet_32", "--ngf", "4")
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert "packed at load_size 32, smaller than --load_size 256" in line, line
