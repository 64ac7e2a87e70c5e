"""JSON nested deeper than the parser's recursion limit (``'[' * 200000``) is a file that is not
JSON like any other: json.loads raises RecursionError there, which went past every ``except
(OSError, ValueError)`` into a traceback. A damaged manifest stopped `train --continue_train`,
`test` and even `train --overwrite` (which is how one recovers from it); a damaged index or
pack state stopped `pack` and training; a damaged results file stopped `bench --plot`."""
import json

import pytest

from fastp2p.bench import results_files
from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.pack_plan import packed_load_size
from fastp2p.data.packed_index import read_index
from fastp2p.data.synthetic import write_synthetic
from helpers.data_helpers import synthetic_pack
from helpers.train_helpers import one_line, tiny_test_argv, train_argv, write_aligned_dataset

DEEP = "[" * 200000


def test_the_shared_reader_turns_too_deep_a_nesting_into_a_value_error(tmp_path):
    from fastp2p.json_files import parse_json, read_json
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    for read in (lambda: parse_json(DEEP), lambda: read_json(path)):
        with pytest.raises(ValueError, match="nested too deeply"):
            read()
    path.write_text('{"a": [1, 2]}')
    assert read_json(path) == {"a": [1, 2]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = write_aligned_dataset(tmp_path_factory.mktemp("data"), pairs=2)
    checkpoints = tmp_path_factory.mktemp("ck")
    assert main(train_argv(data, checkpoints, "--n_epochs_decay", "0", "--no_html")) == 0
    return data, checkpoints


@pytest.fixture
def deep_manifest(trained, tmp_path):
    """A copy of the trained run whose latest manifest is nested too deeply."""
    import shutil
    data, checkpoints = trained
    copy = tmp_path / "ck"
    shutil.copytree(checkpoints, copy)
    manifest = copy / "tiny" / "latest_checkpoint.json"
    manifest.write_text(DEEP)
    return data, copy, manifest


def test_continue_train_from_a_deep_manifest_says_so_in_one_line(deep_manifest, capsys):
    data, checkpoints, manifest = deep_manifest
    assert main(train_argv(data, checkpoints, "--continue_train", "--n_epochs_decay", "0",
                           "--no_html")) == 1
    line = one_line(capsys.readouterr().err)
    assert str(manifest) in line and "unreadable checkpoint manifest" in line


def test_test_with_a_deep_manifest_says_so_in_one_line(deep_manifest, tmp_path, capsys):
    data, checkpoints, manifest = deep_manifest
    assert main(tiny_test_argv(data, checkpoints, tmp_path / "results")) != 0
    line = one_line(capsys.readouterr().err)
    assert str(manifest) in line


def test_overwrite_recovers_a_folder_with_a_deep_manifest(deep_manifest, capsys):
    data, checkpoints, _ = deep_manifest
    assert main(train_argv(data, checkpoints, "--overwrite", "--n_epochs_decay", "0",
                           "--no_html")) == 0, capsys.readouterr().err
    assert json.loads((checkpoints / "tiny" / "latest_checkpoint.json").read_text())["step"] > 0


@pytest.fixture
def packed(tmp_path, capsys):
    data, out = synthetic_pack(tmp_path, pairs=4)
    capsys.readouterr()
    return data, out


def test_a_deep_pack_index_is_an_unreadable_one(packed):
    _, out = packed
    (out / "train" / "index.json").write_text(DEEP)
    with pytest.raises(DataError, match="unreadable pack index .*nested too deeply"):
        read_index(out / "train")
    assert packed_load_size(out / "train") is None


@pytest.mark.parametrize("name", ["index.json", "pack-state.json"])
def test_a_rerun_over_deep_bookkeeping_packs_again(packed, capsys, name):
    data, out = packed
    if name == "pack-state.json":
        (out / "train" / "index.json").unlink()
    (out / "train" / name).write_text(DEEP)
    assert main(["pack", str(data), str(out), "--load_size", "20", "--pairs-per-shard", "2",
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert read_index(out / "train")["count"] == 4


def test_a_deep_synthetic_record_is_an_unreadable_one(tmp_path):
    (tmp_path / ".fastp2p-synthetic-train.json").write_text(DEEP)
    folder = write_synthetic(tmp_path, 2, progress=False)
    assert len(list(folder.iterdir())) == 2


def test_bench_plot_of_a_deep_results_file_says_so_in_one_line(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(DEEP)
    with pytest.raises(ValueError, match="not readable JSON: .*nested too deeply"):
        results_files.load_results(path)
    assert results_files._run_id_of(path) is None
    assert main(["bench", "--plot", str(path)]) != 0
    assert str(path) in one_line(capsys.readouterr().err)
