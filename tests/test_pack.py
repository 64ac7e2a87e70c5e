"""``fastp2p pack``: shards give the folder dataset's items, resume after an interruption,
``--verify`` and the readers catch corrupt or truncated shards, ``--skip-bad`` lists what it
skipped. Tiny images (a few KB), so the whole module takes a few seconds."""
import argparse
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.data import add_data_arguments, create_dataset
from fastp2p.data.create import packed_mode_note
from fastp2p.data import pack as pack_module
from fastp2p.data.errors import DataError
from fastp2p.data.pack import STATE_NAME, pack_phase
from fastp2p.data.packed import PackedDataset
from fastp2p.data.packed_index import INDEX_NAME, read_pack_state, verify_pack
from fastp2p.data.transforms import Preprocess, to_normalized_tensor
from helpers.data_helpers import dead_pid

LOAD, CROP = 20, 16


def _image(rng, height, width, path):
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def aligned_root(tmp_path_factory):
    """train/ with 7 A|B images of different sizes (all resized to LOAD at pack time)."""
    root = tmp_path_factory.mktemp("aligned")
    rng = np.random.default_rng(0)
    for phase, count in (("train", 7), ("val", 2)):
        (root / phase).mkdir()
        for i in range(count):
            _image(rng, 24 + i, 2 * (22 + 3 * i), root / phase / f"{i:02d}.png")
    return root


def _args(root, **options):
    parser = add_data_arguments(argparse.ArgumentParser())
    argv = ["--dataroot", str(root), "--load_size", str(LOAD), "--crop_size", str(CROP)]
    for key, value in options.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return parser.parse_args(argv)


def _pack(root, out, **options):
    options = {"load_size": LOAD, "pairs_per_shard": 3, "progress": False, **options}
    return pack_phase(root, out, "train", **options)


def _assert_same_items(folder_ds, packed_ds, seeds=range(3)):
    assert len(folder_ds) == len(packed_ds)
    for index in range(len(folder_ds)):
        for seed in seeds:
            want = folder_ds.load(index, random.Random(seed))
            got = packed_ds.load(index, random.Random(seed))
            assert torch.equal(got["A"], want["A"]) and torch.equal(got["B"], want["B"])
            assert (got["A_paths"], got["B_paths"]) == (want["A_paths"], want["B_paths"])


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_packed_items_equal_folder_items(aligned_root, tmp_path, direction):
    out = tmp_path / "packed"
    _pack(aligned_root, out)
    folder_ds = create_dataset(_args(aligned_root, direction=direction), "train")
    packed_ds = create_dataset(_args(out, direction=direction), "train")
    assert isinstance(packed_ds, PackedDataset)     # create_dataset detects the pack
    _assert_same_items(folder_ds, packed_ds)
    assert {packed_ds.load(i, random.Random(i))["A"].shape for i in range(7)} == {(3, CROP, CROP)}


def test_two_folders_pack_equals_folders(tmp_path):
    root, rng = tmp_path / "two", np.random.default_rng(1)
    for side in ("A", "B"):
        (root / "train" / side).mkdir(parents=True)
    for name in ("a", "b", "c"):
        _image(rng, 21, 25, root / "train" / "A" / f"{name}.png")
        _image(rng, 21, 25, root / "train" / "B" / f"{name}.jpg")
    _pack(root, tmp_path / "out", dataset_mode="two_folders")
    _assert_same_items(create_dataset(_args(root, dataset_mode="two_folders"), "train"),
                       create_dataset(_args(tmp_path / "out"), "train"))


def test_read_batch_matches_read_raw_across_uneven_shards(aligned_root, tmp_path):
    _pack(aligned_root, tmp_path / "out")
    dataset = PackedDataset(tmp_path / "out" / "train", Preprocess(load_size=LOAD, crop_size=CROP),
                            swap=False)
    assert [s["count"] for s in dataset.shards] == [3, 3, 1]
    order = [6, 0, 3, 2, 5]
    batch = dataset.read_batch(order)
    assert batch.shape == (5, LOAD, 2 * LOAD, 3) and batch.dtype == torch.uint8
    for slot, index in enumerate(order):
        assert np.array_equal(batch[slot].numpy(), dataset.read_raw(index))
    with pytest.raises(IndexError):
        dataset.read_batch([7])


def test_interrupted_pack_resumes_keeping_finished_shards(aligned_root, tmp_path, monkeypatch):
    fresh = _pack(aligned_root, tmp_path / "fresh")
    out = tmp_path / "out"
    real_write = pack_module.write_shard
    written = []

    def interrupt_on_third(job):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(job["file"])
        return real_write(job)

    monkeypatch.setattr(pack_module, "write_shard", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        _pack(aligned_root, out)
    phase = out / "train"
    assert not (phase / INDEX_NAME).exists()      # a half pack is never detected as packed
    assert sorted(read_pack_state(phase / STATE_NAME)["shards"]) == written

    # a finished shard that rotted meanwhile is rewritten, the good one kept
    data = bytearray((phase / "shard-00001.u8").read_bytes())
    data[5] ^= 0xFF
    (phase / "shard-00001.u8").write_bytes(bytes(data))
    # a killed worker's temp file (only a dead process's is removed)
    (phase / f"shard-00002.u8.tmp-{dead_pid()}").write_bytes(b"partial")
    written.clear()
    monkeypatch.setattr(pack_module, "write_shard", lambda job: written.append(job["file"])
                        or real_write(job))
    resumed = _pack(aligned_root, out)
    assert written == ["shard-00001.u8", "shard-00002.u8"]
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in fresh["shards"]]
    assert not (phase / STATE_NAME).exists() and not list(phase.glob("*.tmp-*"))
    verify_pack(phase)
    written.clear()
    _pack(aligned_root, out)          # complete and unchanged: nothing to redo
    assert written == []


def _packed_then_changed(aligned_root, tmp_path):
    """A copy of ``aligned_root`` packed into tmp_path/out, then its 04.png (in the second
    shard) changed; returns the copy."""
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    for path in sorted((aligned_root / "train").iterdir()):
        (root / "train" / path.name).write_bytes(path.read_bytes())
    _pack(root, tmp_path / "out")
    _image(np.random.default_rng(5), 30, 60, root / "train" / "04.png")
    return root


def test_changed_source_repacks_only_its_shard(aligned_root, tmp_path, monkeypatch):
    root = _packed_then_changed(aligned_root, tmp_path)
    written = []
    real_write = pack_module.write_shard
    monkeypatch.setattr(pack_module, "write_shard", lambda job: written.append(job["file"])
                        or real_write(job))
    _pack(root, tmp_path / "out")
    assert written == ["shard-00001.u8"]


def test_a_repack_stopped_after_a_changed_shard_leaves_no_index(aligned_root, tmp_path,
                                                                monkeypatch):
    """index.json goes before the first shard is rewritten: a re-pack stopped after the new
    shard-00001.u8 landed left the old index beside it, which readers and --verify took for a
    finished pack with a damaged shard instead of an unfinished one."""
    root = _packed_then_changed(aligned_root, tmp_path)
    real_write = pack_module.write_shard

    def write_then_stop(job):
        real_write(job)
        raise KeyboardInterrupt

    monkeypatch.setattr(pack_module, "write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _pack(root, tmp_path / "out")
    phase = tmp_path / "out" / "train"
    assert (phase / "shard-00001.u8").exists() and not (phase / INDEX_NAME).exists()
    with pytest.raises(DataError, match="unfinished pack"):
        create_dataset(_args(tmp_path / "out"), "train")


def _corrupt(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    elif how == "appended":     # e.g. a copy that went on writing past the shard's end
        path.write_bytes(path.read_bytes() + bytes(7))
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, message", [("truncated", "truncated or corrupt"),
                                          ("appended", "truncated or corrupt"),
                                          ("flipped", "checksum does not match")])
def test_verify_names_a_bad_shard(aligned_root, tmp_path, how, message):
    _pack(aligned_root, tmp_path / "out")
    shard = tmp_path / "out" / "train" / "shard-00001.u8"
    _corrupt(shard, how)
    with pytest.raises(DataError, match=message) as error:
        verify_pack(tmp_path / "out" / "train")
    text = str(error.value)
    assert str(shard) in text and "fastp2p pack" in text and "\n" not in text


def test_reader_rejects_truncated_shard_and_other_preprocess(aligned_root, tmp_path):
    _pack(aligned_root, tmp_path / "out")
    with pytest.raises(DataError, match="resize_and_crop"):
        create_dataset(_args(tmp_path / "out", preprocess="crop"), "train")
    with pytest.raises(DataError, match=f"packed at load_size {LOAD}"):
        create_dataset(_args(tmp_path / "out", load_size=LOAD + 2), "train")
    # a crop above the stored size too (fastp2p test's load follows its crop): both are named
    with pytest.raises(DataError, match=f"--load_size and --crop_size of at most {LOAD}"):
        create_dataset(_args(tmp_path / "out", load_size=LOAD + 4, crop_size=LOAD + 4), "train")
    shard = tmp_path / "out" / "train" / "shard-00002.u8"
    good = shard.read_bytes()
    for how in ("appended", "truncated"):   # refused on opening, before a pixel is read
        shard.write_bytes(good)
        _corrupt(shard, how)
        with pytest.raises(DataError, match="shard-00002.u8: shard is .* truncated"):
            create_dataset(_args(tmp_path / "out"), "train")


def test_a_smaller_load_size_resizes_the_stored_halves_again(aligned_root, tmp_path):
    """--load_size below the pack's: each stored half resized (bicubic) to it, then the crop;
    at load = crop the whole half, whatever the draw. The batch reader refuses (it gives the
    stored pixels only)."""
    _pack(aligned_root, tmp_path / "out")
    dataset = create_dataset(_args(tmp_path / "out", load_size=CROP, no_flip=True), "train")
    stored = dataset.read_raw(1)
    for seed in (0, 1):
        item = dataset.load(1, random.Random(seed))
        for name, half in (("A", stored[:, :LOAD]), ("B", stored[:, LOAD:])):
            expected = np.asarray(Image.fromarray(half).resize((CROP, CROP), Image.BICUBIC))
            assert torch.equal(item[name], to_normalized_tensor(expected))
    with pytest.raises(ValueError, match="resizes them again"):
        dataset.read_batch([0])


def test_an_unfinished_pack_is_named_as_one_by_the_readers_and_verify(aligned_root, tmp_path,
                                                                     capsys):
    """A pack stopped before its index was written (its state file and some shards only):
    training and --verify say so and how to finish it, not "no images" / "no pack here"."""
    from fastp2p.cli import main
    _pack(aligned_root, tmp_path / "out")
    phase = tmp_path / "out" / "train"
    (phase / INDEX_NAME).unlink()
    (phase / STATE_NAME).write_text(json.dumps({"load_size": LOAD, "shards": {}}))
    with pytest.raises(DataError, match="unfinished pack") as error:
        create_dataset(_args(tmp_path / "out"), "train")
    assert "fastp2p pack" in str(error.value) and str(phase) in str(error.value)
    capsys.readouterr()
    assert main(["pack", "--verify", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "unfinished pack" in err and str(phase) in err and err.count("\n") == 1


def test_a_pack_without_the_split_asked_for_says_so(aligned_root, tmp_path):
    _pack(aligned_root, tmp_path / "out")          # train only
    with pytest.raises(DataError, match="a pack without a test split .it holds train.") as error:
        create_dataset(_args(tmp_path / "out"), "test")
    assert "--phase test" in str(error.value)


def test_pack_names_a_file_given_as_dataroot_and_packs_a_repeated_phase_once(
        aligned_root, tmp_path, capsys):
    from fastp2p.cli import main
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["pack", str(afile), str(tmp_path / "x"), "--no-progress"]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["pack", str(aligned_root), str(tmp_path / "out"), "--phase", "train", "train",
                 "--load_size", str(LOAD), "--no-progress", "--workers", "1"]) == 0
    assert capsys.readouterr().out.count("pairs in") == 1


def test_phase_before_the_folders_says_it_took_them(capsys):
    """--phase takes every word after it; DATAROOT and OUT written after it were 'missing'."""
    from fastp2p.cli import main
    assert main(["pack", "--phase", "train", "data", "out"]) == 2
    err = capsys.readouterr().err
    assert "--phase takes every word after it (here: train data out)" in err


def test_bad_image_stops_pack_unless_skip_bad(aligned_root, tmp_path):
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    for path in sorted((aligned_root / "train").iterdir())[:4]:
        (root / "train" / path.name).write_bytes(path.read_bytes())
    rng = np.random.default_rng(2)
    _image(rng, 40, 80, root / "train" / "big.jpg")
    whole = (root / "train" / "big.jpg").read_bytes()
    (root / "train" / "big.jpg").write_bytes(whole[:len(whole) // 2])     # truncated JPEG
    with pytest.raises(DataError, match="big.jpg") as error:
        _pack(root, tmp_path / "out")
    assert "--skip-bad" in str(error.value)
    index = _pack(root, tmp_path / "out", skip_bad=True)
    assert index["count"] == 4
    assert all("big.jpg" not in a for a, _ in index["sources"])


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastp2p", "pack", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_packs_with_workers_and_verifies(aligned_root, tmp_path):
    out = tmp_path / "out"
    result = _cli(aligned_root, out, "--load_size", LOAD, "--workers", 2, "--pairs-per-shard", 2,
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train: 7 pairs in 4 shards" in result.stdout and "val: 2 pairs" in result.stdout
    assert "pack train" not in result.stderr        # no tqdm bar in a pipe
    result = _cli("--verify", out, "--no-progress", cwd=tmp_path)
    assert result.returncode == 0 and "checksums OK" in result.stdout, result.stderr
    _corrupt(out / "val" / "shard-00000.u8", "flipped")
    result = _cli("--verify", out, "--no-progress", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "val/shard-00000.u8" in result.stderr


def test_cli_help_and_bad_options(tmp_path):
    result = _cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("DATAROOT", "OUT", "--verify", "--load_size", "--dataset_mode", "--phase",
                   "--workers", "--pairs-per-shard", "--skip-bad", "--no-progress",
                   "resize_and_crop", "resume"):
        assert option in result.stdout, option
    assert _cli(tmp_path, cwd=tmp_path).returncode == 2
    assert _cli("--verify", tmp_path, tmp_path, cwd=tmp_path).returncode == 2
    result = _cli(tmp_path / "missing", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 1 and "DATAROOT folder not found" in result.stderr
    result = _cli("--verify", tmp_path, cwd=tmp_path)
    assert result.returncode == 1 and "no packed dataset here" in result.stderr


def test_files_the_scan_leaves_out_are_in_the_index_and_the_summary(tmp_path, capsys):
    """--skip-bad on two_folders: an A without a B partner and a pair of two sizes are left out
    by the scan; the index's "skipped" and pack's summary count them, each listed once."""
    from fastp2p.cli import main
    rng = np.random.default_rng(4)
    for side in ("A", "B"):
        (tmp_path / "data" / "train" / side).mkdir(parents=True)
        for name in ("0", "1", "2"):
            _image(rng, 24, 24, tmp_path / "data" / "train" / side / f"{name}.png")
    _image(rng, 24, 24, tmp_path / "data" / "train" / "A" / "lonely.png")
    _image(rng, 24, 32, tmp_path / "data" / "train" / "B" / "2.png")      # its A is 24x24
    capsys.readouterr()
    assert main(["pack", str(tmp_path / "data"), str(tmp_path / "out"), "--dataset_mode",
                 "two_folders", "--skip-bad", "--load_size", str(LOAD), "--no-progress",
                 "--workers", "1"]) == 0
    index = json.loads((tmp_path / "out" / "train" / INDEX_NAME).read_text())
    assert index["count"] == 2
    assert sorted(path for path, _ in index["skipped"]) == ["train/A/2.png", "train/A/lonely.png"]
    captured = capsys.readouterr()
    assert "2 pairs in 2 shards, 2 bad files skipped" in captured.out
    assert captured.err.count("lonely.png") == 1


def test_pairs_failing_at_pack_time_are_skipped_and_listed(aligned_root, tmp_path, monkeypatch):
    """A file that breaks between the scan and its decode (or a decode error the header scan
    cannot see): with --skip-bad its pair is left out and listed, shards may end up uneven or
    empty, and the reader still maps every index to the right pair."""
    real_load = pack_module.load_pair
    bad = {"train/03.png", "train/04.png", "train/05.png"}     # all of shard 1

    def load_or_fail(dataroot, a_rel, b_rel, aligned, load_size):
        if a_rel in bad:
            raise DataError(f"{dataroot / a_rel}: cannot decode this image (test)")
        return real_load(dataroot, a_rel, b_rel, aligned, load_size)

    monkeypatch.setattr(pack_module, "load_pair", load_or_fail)
    with pytest.raises(DataError, match="03.png"):
        _pack(aligned_root, tmp_path / "strict")
    index = _pack(aligned_root, tmp_path / "out", skip_bad=True)
    assert [s["count"] for s in index["shards"]] == [3, 0, 1]
    assert sorted(path for path, _ in index["skipped"]) == sorted(bad)
    folder_ds = create_dataset(_args(aligned_root), "train")
    packed_ds = create_dataset(_args(tmp_path / "out"), "train")
    kept = [i for i, path in enumerate(folder_ds.paths) if not any(path.endswith(b) for b in bad)]
    assert len(packed_ds) == len(kept) == 4
    for slot, index in enumerate(kept):
        want = folder_ds.load(index, random.Random(slot))
        got = packed_ds.load(slot, random.Random(slot))
        assert torch.equal(got["A"], want["A"]) and got["A_paths"] == want["A_paths"]


def test_another_dataset_mode_on_a_pack_is_said_to_not_apply(aligned_root, tmp_path):
    """A pack stores pairs: --dataset_mode two_folders on an aligned pack reads those same
    pairs, and says so instead of passing over the option in silence."""
    _pack(aligned_root, tmp_path / "out")
    note = packed_mode_note(_args(tmp_path / "out", dataset_mode="two_folders"), "train")
    assert "--dataset_mode two_folders does not apply" in note and "aligned" in note
    assert packed_mode_note(_args(tmp_path / "out"), "train") is None
    assert packed_mode_note(_args(aligned_root, dataset_mode="two_folders"), "train") is None
