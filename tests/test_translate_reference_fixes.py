"""`fastp2p test` and `fastp2p pack` on datasets the reference reads (a reviewer's repros, each
failing before its fix): a packed split names its outputs as its image folder does, file names
that are not valid UTF-8 are packed and linked from index.html, and the constant baseline
depends only on --seed."""
import os
import random

import pytest
import torch

from fastp2p.cli import main
from fastp2p.data.pack import pack_phase
from fastp2p.train.evaluation import train_mean_image
from helpers.data_helpers import data_args, write_ab
from helpers.train_helpers import tiny_test_argv, train_tiny_run, write_aligned_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoints folder holding a 1-epoch run "tiny" (unet_32, 32x32 halves)."""
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2, phases=("train",))
    return train_tiny_run(data, tmp_path_factory.mktemp("trained"))


def _output_files(results) -> list[str]:
    return sorted(os.listdir(results / "tiny" / "test_latest" / "images"))


def test_a_packed_split_names_its_outputs_as_its_folder(tmp_path, trained, capsys):
    """Two levels of nesting: the folder gave c_b_1, the pack b_1."""
    for index, name in enumerate(["1.png", "c/b/1.png"]):
        write_ab(tmp_path / "data" / "test" / name, 32, 32, a_blue=index)
    pack_phase(tmp_path / "data", tmp_path / "packed", "test", load_size=32, progress=False)
    for source in ("data", "packed"):
        assert main(tiny_test_argv(tmp_path / source, trained, tmp_path / f"res-{source}")) == 0
    from_folder = _output_files(tmp_path / "res-data")
    assert "c_b_1_real_A.png" in from_folder
    assert _output_files(tmp_path / "res-packed") == from_folder


def _write_non_utf8_split(root):
    names = [b"caf\xe9.png", b"ok.png"]
    try:
        for index, name in enumerate(names):
            write_ab(root / "test" / os.fsdecode(name), 32, 32, a_blue=index)
    except (OSError, UnicodeError) as error:   # a file system that only takes UTF-8 names
        pytest.skip(f"cannot create a file name that is not UTF-8 here ({error})")


def test_names_that_are_not_utf8_are_packed_and_linked(tmp_path, trained, capsys):
    _write_non_utf8_split(tmp_path / "data")
    pack_argv = ["pack", str(tmp_path / "data"), str(tmp_path / "packed"), "--phase", "test",
                 "--load_size", "32", "--no-progress", "--workers", "1"]
    assert main(pack_argv) == 0
    shards = {path.name: path.stat().st_mtime_ns
              for path in (tmp_path / "packed" / "test").glob("shard-*")}
    assert main(pack_argv) == 0         # a re-run keeps the shards: the same plan digests
    assert {path.name: path.stat().st_mtime_ns
            for path in (tmp_path / "packed" / "test").glob("shard-*")} == shards
    for source in ("data", "packed"):
        results = tmp_path / f"res-{source}"
        assert main(tiny_test_argv(tmp_path / source, trained, results)) == 0
        images = results / "tiny" / "test_latest" / "images"
        assert os.path.isfile(os.path.join(os.fsencode(images), b"caf\xe9_fake_B.png"))
        page = (results / "tiny" / "test_latest" / "index.html").read_text(encoding="utf-8")
        assert "images/caf%E9_fake_B.png" in page and "images/ok_fake_B.png" in page


def test_the_constant_baseline_depends_only_on_the_seed(tmp_path):
    """Its train images are cropped (--load_size > --crop_size): the crops came from Python's
    unseeded global random."""
    for index in range(3):
        write_ab(tmp_path / "train" / f"{index}.png", 20, 20, a_blue=index)
    args = data_args(tmp_path, "--load_size", "20", "--crop_size", "8", "--no_flip")
    args.seed = 0
    means = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        means.append(train_mean_image(args, torch.Size((3, 8, 8)))[0])
    assert means[0] is not None and torch.equal(means[0], means[1])
