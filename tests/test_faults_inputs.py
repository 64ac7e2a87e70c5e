"""Fault injection on what a user or an attacker hands fastp2p (issue 12): edited pack indexes,
damaged shards, files that are not checkpoints, option values that make no sense, and empty
batches. Each gets a one-line error; nothing is read or written outside the folder named."""
import errno
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastp2p
from fastp2p.cli import main
from fastp2p.data.errors import DataError
from fastp2p.data.pack import pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import INDEX_NAME
from fastp2p.data.transforms import Preprocess
from fastp2p.train.engine import Pix2PixEngine
from helpers.train_helpers import tiny_networks, train_argv, write_aligned_dataset

LOAD = 20


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A pack of 5 pairs in shards of 2: (dataroot, pack folder)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "train").mkdir()
    for i in range(5):
        pixels = rng.integers(0, 256, (LOAD, 2 * LOAD, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"{i}.png")
    out = tmp_path_factory.mktemp("packed")
    pack_phase(root, out, "train", load_size=LOAD, pairs_per_shard=2, progress=False)
    return root, out


@pytest.fixture
def pack_copy(packed, tmp_path):
    shutil.copytree(packed[1] / "train", tmp_path / "train")
    return tmp_path / "train"


def _open(phase_dir):
    return PackedDataset(phase_dir, Preprocess(mode="resize_and_crop", load_size=LOAD,
                                               crop_size=16), swap=False)


def _edit_index(phase_dir, edit):
    index = json.loads((phase_dir / INDEX_NAME).read_text())
    edit(index)
    (phase_dir / INDEX_NAME).write_text(json.dumps(index))


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ---- 6. pack metadata is validated ----------------------------------------------------------

@pytest.mark.parametrize("edit,field", [
    (lambda i: i.pop("height"), "'height'"),
    (lambda i: i.update(width="20"), "'width'"),
    (lambda i: i.update(channels=0), "'channels'"),
    (lambda i: i.update(count=True), "'count'"),
    (lambda i: i.update(shards={}), "'shards'"),
    (lambda i: i["shards"].__setitem__(1, "shard-00001.u8"), "shards[1]"),
    (lambda i: i["shards"][0].pop("count"), "shards[0].count"),
    (lambda i: i["shards"][2].update(crc32=-1), "shards[2].crc32"),
    (lambda i: i["shards"][0].update(sha256="x"), "shards[0].sha256"),
    (lambda i: i.update(sources=[["a", "b"]] * 4 + [["a"]]), "'sources'"),
    (lambda i: i.update(count=4), "'count' (4)"),
    (lambda i: i.pop("dataroot"), "'dataroot'"),
], ids=["missing", "string", "zero", "bool", "shards-type", "shard-type", "shard-count", "crc",
        "sha", "sources", "count-mismatch", "dataroot"])
def test_an_edited_index_names_the_field(pack_copy, edit, field):
    _edit_index(pack_copy, edit)
    with pytest.raises(DataError) as err:
        _open(pack_copy)
    assert field in _one_line(err) and "fastp2p pack" in str(err.value)


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "sub/shard.u8", "..",
                                  "..\\shard.u8"])
def test_a_shard_path_outside_the_pack_folder_is_refused(pack_copy, name):
    outside = pack_copy.parent / "outside.u8"
    outside.write_bytes((pack_copy / "shard-00000.u8").read_bytes())  # would fit, if followed
    _edit_index(pack_copy, lambda index: index["shards"][0].update(file=name))
    with pytest.raises(DataError, match="plain file name inside the pack folder") as err:
        _open(pack_copy)
    _one_line(err)


def test_an_older_pack_is_refused_and_a_repack_keeps_its_shards(packed, tmp_path):
    root, _ = packed
    out = tmp_path / "out"
    pack_phase(root, out, "train", load_size=LOAD, pairs_per_shard=2, progress=False)
    phase = out / "train"

    def as_version_1(index):
        index["version"] = 1
        for shard in index["shards"]:
            del shard["crc32"]
    _edit_index(phase, as_version_1)
    with pytest.raises(DataError, match="version 1.*fastp2p pack"):
        _open(phase)
    shards = {p.name: p.stat().st_mtime_ns for p in phase.glob("shard-*.u8")}
    pack_phase(root, out, "train", load_size=LOAD, pairs_per_shard=2, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in phase.glob("shard-*.u8")} == shards
    assert len(_open(phase)) == 5


# ---- 7. a damaged shard is detected before its pairs are used --------------------------------

def _flip_a_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_byte_stops_reading_the_shard(pack_copy):
    _flip_a_byte(pack_copy / "shard-00001.u8", 7)
    dataset = _open(pack_copy)  # sizes still match: only the checksum can tell
    dataset.read_raw(0)  # shard 0 is fine
    for read in (lambda: dataset.read_raw(3), lambda: dataset.read_batch([0, 2])):
        with pytest.raises(DataError, match="shard-00001.u8.*CRC32.*fastp2p pack") as err:
            read()
        _one_line(err)


def test_each_shard_is_checked_once_per_process(pack_copy, monkeypatch):
    import fastp2p.data.packed as packed_module
    checked = []
    real_crc32 = packed_module.zlib.crc32
    monkeypatch.setattr(packed_module.zlib, "crc32",
                        lambda data, *rest: checked.append(len(data)) or real_crc32(data, *rest))
    dataset = _open(pack_copy)
    for _ in range(3):
        dataset.read_batch(range(5))
    assert len(checked) == 3  # three shards, each checked the first time it was mapped


def test_training_on_a_damaged_pack_stops_with_one_line(packed, tmp_path, capsys):
    root, _ = packed
    out = tmp_path / "out"
    pack_phase(root, out, "train", load_size=40, pairs_per_shard=2, progress=False)
    _flip_a_byte(out / "train" / "shard-00002.u8", 11)
    argv = train_argv(out, tmp_path / "ckpt")
    argv[argv.index("--load_size") + 1] = "40"
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "shard-00002.u8" in err and "re-run `fastp2p pack" in err


# ---- 8. loads that are not checkpoints; option values; empty batches -----------------------

def _checkpoint(tmp_path):
    path = tmp_path / "net.pth"
    torch.save(fastp2p.UNet(3, 3, 5, ngf=4).state_dict(), path)
    return path


@pytest.mark.parametrize("content,message", [
    (b"", "empty, not a PyTorch checkpoint"),
    (b"epoch,step\n1,2\n", "not a PyTorch checkpoint"),
    ("half", "truncated or damaged"),
], ids=["empty", "text", "truncated"])
def test_from_checkpoint_on_a_file_that_is_no_checkpoint(tmp_path, content, message):
    path = _checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if content == "half" else content)
    with pytest.raises(ValueError, match=message) as err:
        fastp2p.UNet.from_checkpoint(path)
    assert str(path) in _one_line(err)


@pytest.mark.parametrize("keep", [30, 5_000, -100], ids=["head", "inside", "tail-cut"])
def test_a_checkpoint_cut_anywhere_is_called_truncated(tmp_path, keep):
    """torch's zip reader raises a bare OSError (errno 22, no file name) for most cuts."""
    path = _checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError, match="truncated or damaged") as err:
        fastp2p.UNet.from_checkpoint(path)
    assert str(path) in _one_line(err)


def test_random_bytes_are_not_called_a_pickle_of_objects(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(3).bytes(5_000))
    with pytest.raises(ValueError, match="not a PyTorch checkpoint") as err:
        fastp2p.UNet.from_checkpoint(path)
    assert "run code" not in _one_line(err)


def test_a_pickle_with_a_blocked_global_names_it(tmp_path):
    path = tmp_path / "system.pth"
    torch.save({"call": os.system}, path)
    with pytest.raises(ValueError, match="could run code") as err:
        fastp2p.UNet.from_checkpoint(path)
    assert "system" in _one_line(err) and str(path) in _one_line(err)


def test_a_plain_pickle_is_not_called_a_truncated_checkpoint(tmp_path):
    """pickle.dump's own format (framed, protocol 4+): the safe unpickler stops at its first
    opcode, before any global; it is refused as not torch.save's, not as a file to write again."""
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"call": os.system}))
    with pytest.raises(ValueError, match="a pickle that is not a PyTorch checkpoint") as err:
        fastp2p.UNet.from_checkpoint(path)
    assert "write it again" not in _one_line(err)


def test_a_missing_checkpoint_keeps_its_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastp2p.UNet.from_checkpoint(tmp_path / "absent.pth")


def _exit_code_and_error(argv, capsys):
    return main(argv), capsys.readouterr().err


@pytest.mark.parametrize("option,value", [
    ("--save_latest_freq", "-5"), ("--save_latest_freq", "0"), ("--display_freq", "0"),
    ("--save_epoch_freq", "0"), ("--batch_size", "0"), ("--n_epochs", "-1"),
    ("--epoch_count", "0"), ("--lr_decay_iters", "0"), ("--log-every", "0"), ("--ngf", "0"),
    ("--load_size", "-1"), ("--num_threads", "-2"),
    ("--name", "../../x"), ("--name", "a/b"), ("--name", ".."), ("--name", ""),
    ("--epoch", "../../latest"), ("--print_freq", "0"), ("--load_iter", "-4"),
])
def test_bad_option_values_exit_2_before_anything_is_written(tmp_path, capsys, option, value):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    checkpoints = tmp_path / "deep" / "ckpt"
    code, err = _exit_code_and_error(train_argv(data, checkpoints, option, value), capsys)
    assert code == 2 and option in err
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x").exists()


def test_a_cosine_schedule_over_no_epoch_is_an_option_error(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    argv = train_argv(data, tmp_path / "deep" / "ckpt", "--lr_policy", "cosine", "--n_epochs",
                      "0")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--lr_policy cosine" in err and "--n_epochs" in err and err.count("\n") == 1
    assert not (tmp_path / "deep").exists()


def test_test_command_refuses_paths_in_its_names_too(tmp_path, capsys):
    code, err = _exit_code_and_error(["test", "--name", "../x", "--num_test", "1"], capsys)
    assert code == 2 and "--name" in err
    code, err = _exit_code_and_error(["test", "--phase", "../../etc", "--num_test", "1"], capsys)
    assert code == 2 and "--phase" in err
    code, err = _exit_code_and_error(["test", "--num_test", "0"], capsys)
    assert code == 2 and "--num_test" in err


def test_pack_refuses_phase_paths_and_reports_write_errors_in_one_line(packed, tmp_path,
                                                                       capsys):
    root, _ = packed
    code, err = _exit_code_and_error(["pack", str(root), str(tmp_path / "out"), "--phase",
                                      "../../x"], capsys)
    assert code == 2 and "--phase" in err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["pack", str(root), str(not_a_folder / "out"), "--workers", "1",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(not_a_folder) in err and os.strerror(errno.ENOTDIR) in err


def test_options_that_need_cuda_exit_2_on_the_cpu(tmp_path, capsys):
    data = write_aligned_dataset(tmp_path / "data", pairs=1, phases=("train",))
    for extra in (["--precision", "bf16"], ["--graphs"]):
        assert main(train_argv(data, tmp_path / "ckpt", "--device", "cpu", *extra)) == 2


def test_an_empty_batch_reports_the_callers_shape():
    """The networks return an empty output for one, as the reference's do
    (tests/test_empty_batch_and_full_dropout.py); a training step refuses it."""
    netG, netD = tiny_networks()
    empty = torch.empty(0, 3, 32, 32)
    with pytest.raises(ValueError, match=r"empty batch \(shape \(0, 3, 32, 32\)\)"):
        Pix2PixEngine(netG, netD).step(empty, empty)


def test_no_load_in_the_project_can_run_code():
    """Every torch.load call passes weights_only=True (the checks above cover its errors)."""
    root = Path(fastp2p.__file__).parent
    calls = [(path.name, args) for path in root.rglob("*.py")
             for args in re.findall(r"torch\.load\(([^)]*)\)", path.read_text(encoding="utf-8"))]
    assert calls and all("weights_only=True" in args for _, args in calls), calls
