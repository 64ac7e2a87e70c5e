"""Data messages for a --dataroot that is not what it should be (QA r39 nits): a split given
as --dataroot is named as one, with the folder to pass; a pack's missing split and its too
small load size are answered with a `fastp2p pack` command built from the source its index
records, or, where that source has no such split (a --synthetic one), with what to do instead.
The printed commands are run here, and work."""
import gc
import json
import shlex

import pytest

from fastp2p.cli import main
from fastp2p.data import create_dataset
from fastp2p.data.errors import DataError
from helpers.data_helpers import data_args, make_aligned, synthetic_pack, tiny_pack_args


def test_a_packs_split_given_as_dataroot_names_the_pack(tmp_path):
    # a folder with a space: the option said is copied into a command line, so it is quoted
    _, out = synthetic_pack(tmp_path / "my data", 2)
    for phase, also in (("train", ""), ("test", " --phase train")):
        with pytest.raises(DataError) as error:
            create_dataset(data_args(out / "train"), phase)
        assert str(error.value) == (f"{out / 'train'} is a pack's train split: pass --dataroot "
                                    f"{shlex.quote(str(out))}{also}")


def test_a_split_of_images_given_as_dataroot_names_the_dataset_folder(tmp_path):
    root = tmp_path / "my data"
    make_aligned(root, count=1)
    with pytest.raises(DataError) as error:
        create_dataset(data_args(root / "train"), "train")
    assert str(error.value).endswith("is a train split, not a dataset folder holding splits: "
                                     f"pass --dataroot {shlex.quote(str(root))}")
    # a dataset root named like a split, holding splits of its own, is read as one
    make_aligned(root / "train", count=1)
    assert len(create_dataset(data_args(root / "train"), "train")) == 1


def test_a_synthetic_pack_without_a_test_split_says_it_has_none_to_pack(tmp_path):
    data, out = synthetic_pack(tmp_path, 2)
    with pytest.raises(DataError) as error:
        create_dataset(data_args(out, "--load_size", "20", "--crop_size", "20"), "test")
    message = str(error.value)
    assert message.startswith(f"{out}: a pack without a test split (it holds train), and its "
                              f"source {data} has no test split to pack (--synthetic writes a "
                              "train split only): pass --phase train to read a split the pack "
                              "holds, or pack another dataset's test split into it: `fastp2p "
                              f"pack DATAROOT {shlex.quote(str(out))} --phase test --load_size 20 ")
    assert "SOURCE" not in message


def test_a_pack_without_a_split_its_source_holds_gives_the_command_packing_it(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    make_aligned(data, count=2)
    make_aligned(data, count=1, phase="test")
    assert main(tiny_pack_args(data, out, "--phase", "train")) == 0
    with pytest.raises(DataError) as error:
        create_dataset(data_args(out, "--load_size", "16", "--crop_size", "16"), "test")
    command = str(error.value).partition("pack that split too: `")[2].rstrip("`")
    assert command.startswith(f"fastp2p pack {shlex.join([str(data), str(out)])} --phase test "
                              "--load_size 16 ")
    assert main(shlex.split(command)[1:] + ["--no-progress"]) == 0
    assert len(create_dataset(data_args(out, "--load_size", "16", "--crop_size", "16"),
                              "test")) == 1


def test_a_pack_too_small_for_load_size_gives_the_repack_command_with_its_source(tmp_path):
    data, out = synthetic_pack(tmp_path, 2)
    options = ("--load_size", "24", "--crop_size", "24")
    with pytest.raises(DataError) as error:
        create_dataset(data_args(out, *options), "train")
    command = str(error.value).partition("repack at that size: `")[2].rstrip("`")
    assert command.startswith(f"fastp2p pack {shlex.join([str(data), str(out)])} --phase train "
                              "--load_size 24 ")
    assert command.endswith(" --overwrite")
    # the shard size the old load size got is left to pack's choice for the new one
    assert "--pairs-per-shard" not in command
    del error  # its traceback holds the refused dataset, which holds the pack's reading lock
    gc.collect()
    assert main(shlex.split(command)[1:] + ["--no-progress"]) == 0
    assert len(create_dataset(data_args(out, *options), "train")) == 2


def test_a_recorded_source_with_control_characters_is_shown_escaped(tmp_path):
    """index.json is not trusted: its dataroot goes into this message, and a newline or a
    terminal escape in it reached the terminal raw (secqa r42)."""
    _, out = synthetic_pack(tmp_path, 2)
    index_path = out / "train" / "index.json"
    index = json.loads(index_path.read_text())
    index["dataroot"] = str(tmp_path / "gone\x1b]0;title\x07\nsecond line")
    index_path.write_text(json.dumps(index))
    with pytest.raises(DataError) as error:
        create_dataset(data_args(out, "--load_size", "20", "--crop_size", "20"), "test")
    message = str(error.value)
    assert message.isprintable(), message
    assert "gone\\x1b]0;title\\x07\\nsecond line has no test split" in message
