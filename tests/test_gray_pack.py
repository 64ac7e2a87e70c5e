"""Data-pipeline defects a review reproduced (stop 17): each test fails on the code before the fix.

1. `fastp2p pack --synthetic N DIR` removed every pair-named file of DIR/train without a record
   saying fastp2p wrote it: a user's ffmpeg frames (0000000.jpg, ...) were deleted, exit 0.
2. 16-bit grayscale images (mode I;16) went through ``convert("RGB")``, which clips every value
   above 255 to white; 32-bit integer and float images (modes I, F) were clipped the same way.
3. Packed data with --input_nc 1 / --output_nc 1 took grayscale after the stored bicubic resize,
   the folders (and the reference) before it: items differed, while the README said equal.
4. The repack hint said `fastp2p pack DATAROOT OUT`: followed literally, it rebuilt the pack at
   the default load_size 286; and `pack` replaced a pack of another --load_size without a word.
"""
import argparse
import json
import random
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from fastp2p.cli import main
from fastp2p.data import add_data_arguments, create_dataset
from fastp2p.data.errors import DataError
from fastp2p.data.folders import decode_rgb, open_rgb, scan_aligned
from fastp2p.data.pack import load_pair, pack_phase
from fastp2p.data.packed import PackedDataset, read_index, verify_pack
from fastp2p.data.transforms import Preprocess
from fastp2p.data.synthetic import pair_name, write_synthetic


def _files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _user_frames(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((8, 16, 3), 10 * i, np.uint8)).save(folder / pair_name(i))


# ---- 1. --synthetic removes only the pairs its record says fastp2p wrote --------------------

def test_synthetic_refuses_a_users_pair_named_frames(tmp_path, capsys):
    _user_frames(tmp_path / "mine" / "train", 20)
    before = _files(tmp_path / "mine" / "train")
    code = main(["pack", "--synthetic", "5", str(tmp_path / "mine"), str(tmp_path / "out"),
                 "--load_size", "36", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert _files(tmp_path / "mine" / "train") == before
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "mine" / "train") in lines[0]
    assert "write into an empty DATAROOT" in lines[0]
    assert not (tmp_path / "mine" / ".fastp2p-synthetic-train.json").exists()


@pytest.mark.parametrize("record", ["not json {", json.dumps({"size": 256, "quality": 90})])
def test_an_unreadable_or_setless_record_covers_no_files(tmp_path, record):
    """Garbage, or a record without a set (no seed): nothing says which files it wrote. (An
    older fastp2p's record, without a pair count: tests/test_data_compat_stop17.py.)"""
    _user_frames(tmp_path / "train", 3)
    (tmp_path / ".fastp2p-synthetic-train.json").write_text(record)
    before = _files(tmp_path / "train")
    with pytest.raises(DataError, match="write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(tmp_path / "train") == before


def test_pair_named_files_past_the_recorded_count_are_refused(tmp_path):
    folder = write_synthetic(tmp_path, 2, seed=0, progress=False)
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 2
    (folder / pair_name(5)).write_bytes(b"a user's frame")
    before = _files(folder)
    with pytest.raises(DataError, match=f"{pair_name(5)}.*write into an empty DATAROOT"):
        write_synthetic(tmp_path, 2, seed=1, progress=False)
    assert _files(folder) == before


def test_recorded_pairs_of_another_seed_are_still_replaced(tmp_path):
    write_synthetic(tmp_path / "one", 3, seed=1, progress=False)
    folder = write_synthetic(tmp_path, 3, seed=0, progress=False)
    assert json.loads((tmp_path / ".fastp2p-synthetic-train.json").read_text())["pairs"] == 3
    (folder / pair_name(2)).unlink()        # as if a removal was interrupted: none are foreign
    write_synthetic(tmp_path, 3, seed=1, progress=False)
    assert _files(folder) == _files(tmp_path / "one" / "train")


# ---- 2. 16-bit images are scaled to 8 bits, 32-bit ones refused, 8-bit ones unchanged ----------

def _random_pixels(shape, high, dtype, seed=0):
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def test_16_bit_grayscale_is_scaled_to_8_bits_in_folders_and_pack(tmp_path):
    wide = _random_pixels((6, 12), 65536, np.uint16)
    wide[0, :3] = [0, 65535, 257 * 7]
    (tmp_path / "train").mkdir()
    Image.fromarray(wide).save(tmp_path / "train" / "p.png")
    with Image.open(tmp_path / "train" / "p.png") as img:
        assert img.mode in ("I;16", "I")    # as Pillow opens 16-bit PNGs (old ones: I)
    expected = ((wide.astype(np.int64) + 128) // 257).astype(np.uint8)
    got = np.asarray(open_rgb(tmp_path / "train" / "p.png"))
    assert np.array_equal(got, np.repeat(expected[..., None], 3, axis=2))
    assert got[0, :3, 0].tolist() == [0, 255, 7]
    # pack decodes through the same function: at load_size 6 its resize keeps the pixels
    packed = load_pair(tmp_path, "train/p.png", "train/p.png", aligned=True, load_size=6)
    assert np.array_equal(packed, np.repeat(expected[..., None], 3, axis=2))


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_modes_in_memory(mode):
    wide = _random_pixels((4, 5), 65536, np.uint16, seed=1)
    img = Image.frombytes(mode, (5, 4), wide.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    expected = ((wide.astype(np.int64) + 128) // 257).astype(np.uint8)
    assert np.array_equal(np.asarray(decode_rgb(img))[..., 1], expected)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "1", "LA", "CMYK"])
def test_8_bit_images_decode_as_before(mode):
    rgb = Image.fromarray(_random_pixels((5, 7, 3), 256, np.uint8, seed=2))
    img = rgb.convert(mode)
    assert np.array_equal(np.asarray(decode_rgb(img)), np.asarray(img.convert("RGB")))


@pytest.mark.parametrize("pixels, mode", [(np.arange(24, dtype=np.int32) * 5000, "I"),
                                          (np.linspace(0, 1, 24, dtype=np.float32), "F")])
def test_32_bit_images_are_refused_with_one_line_naming_file_and_mode(tmp_path, pixels, mode):
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "p.tif"
    Image.fromarray(pixels.reshape(4, 6)).save(path)
    for skip_bad in (False, True):
        config = Preprocess(load_size=4, crop_size=4)
        if skip_bad:        # listed and skipped; nothing else left to load
            with pytest.raises(DataError, match="every image was bad"):
                scan_aligned(tmp_path / "train", config, skip_bad=True, progress=False)
            continue
        with pytest.raises(DataError) as caught:
            scan_aligned(tmp_path / "train", config, skip_bad=False, progress=False)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and f"(mode {mode})" in message
    with pytest.raises(DataError, match=f"{path}: .*mode {mode}"):
        open_rgb(path)


# ---- 4. the repack hint is the command that made the pack; no silent load-size change --------

def _synthetic_pack(tmp_path, capsys, *extra):
    data, out = tmp_path / "data", tmp_path / "packed"
    assert main(["pack", "--synthetic", "6", str(data), str(out), "--load_size", "20",
                 "--pairs-per-shard", "2", "--no-progress", *extra]) == 0
    capsys.readouterr()
    return data, out


def _shard_bytes(phase_dir):
    return {path.name: path.read_bytes() for path in sorted(phase_dir.glob("shard-*.u8"))}


def test_the_repack_hint_run_as_printed_repairs_the_same_pack(tmp_path, capsys, monkeypatch):
    data, out = _synthetic_pack(tmp_path, capsys, "--skip-bad")
    good = _shard_bytes(out / "train")
    shard = out / "train" / "shard-00001.u8"
    damaged = bytearray(shard.read_bytes())
    damaged[5] ^= 1
    shard.write_bytes(bytes(damaged))
    monkeypatch.chdir(tmp_path / "data")        # the hint's paths are absolute
    dataset = PackedDataset(out / "train", Preprocess(load_size=20, crop_size=16), swap=False)
    with pytest.raises(DataError) as caught:
        for i in range(len(dataset)):
            dataset.load(i, random.Random(i))
    hint = str(caught.value).split("re-run `")[1].split("`")[0]
    assert hint == (f"fastp2p pack {data.resolve()} {out.resolve()} --phase train --load_size 20 "
                    "--dataset_mode aligned --pairs-per-shard 2 --skip-bad")
    words = shlex.split(hint)
    assert words[:2] == ["fastp2p", "pack"]
    assert main(words[1:] + ["--no-progress"]) == 0
    assert read_index(out / "train")["load_size"] == 20
    assert _shard_bytes(out / "train") == good


def test_the_hint_of_an_unreadable_index_names_what_it_cannot_know(tmp_path, capsys):
    _, out = _synthetic_pack(tmp_path, capsys)
    (out / "train" / "index.json").write_text("{ torn")
    with pytest.raises(DataError, match=r"re-run `fastp2p pack DATAROOT \S+packed --phase train "
                                        "--load_size SIZE_IT_WAS_PACKED_AT"):
        read_index(out / "train")


def test_pack_refuses_to_replace_a_pack_of_another_load_size(tmp_path, capsys):
    data, out = _synthetic_pack(tmp_path, capsys)
    before = _shard_bytes(out / "train")
    index_before = (out / "train" / "index.json").read_bytes()
    assert main(["pack", str(data), str(out), "--no-progress"]) == 1    # default 286
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "train") in err[0]
    assert "--load_size 20" in err[0] and "--overwrite" in err[0]
    assert _shard_bytes(out / "train") == before
    assert (out / "train" / "index.json").read_bytes() == index_before
    # the same load size resumes (nothing to do); --overwrite replaces
    assert main(["pack", str(data), str(out), "--load_size", "20", "--no-progress"]) == 0
    assert main(["pack", str(data), str(out), "--load_size", "24", "--overwrite",
                 "--no-progress"]) == 0
    assert read_index(out / "train")["load_size"] == 24


def test_an_interrupted_pack_of_another_load_size_is_refused_too(tmp_path, capsys):
    data, out = _synthetic_pack(tmp_path, capsys)
    index = out / "train" / "index.json"
    index.unlink()      # as a run killed while packing: only its state file describes it
    (out / "train" / "pack-state.json").write_text(json.dumps({"load_size": 20, "shards": {}}))
    assert main(["pack", str(data), str(out), "--load_size", "24", "--no-progress"]) == 1
    assert "--load_size 20" in capsys.readouterr().err


# ---- 3. --input_nc/--output_nc 1: a --gray pack equals the folders pixel for pixel ------------

LOAD, CROP = 20, 16


@pytest.fixture(scope="module")
def colour_root(tmp_path_factory):
    """train/ with 5 random-colour A|B images of different sizes, and the same pairs as
    A/ and B/ files (two_folders), so grayscale-then-resize differs from resize-then-grayscale."""
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(3)
    for layout in ("aligned", "two"):
        for side in (("",) if layout == "aligned" else ("A", "B")):
            (root / layout / "train" / side).mkdir(parents=True)
    for i in range(5):
        pixels = rng.integers(0, 256, (24 + i, 2 * (22 + 3 * i), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "aligned" / "train" / f"{i}.png")
        half = pixels.shape[1] // 2
        Image.fromarray(pixels[:, :half]).save(root / "two" / "train" / "A" / f"{i}.png")
        Image.fromarray(pixels[:, half:]).save(root / "two" / "train" / "B" / f"{i}.png")
    return root


def _data_args(root, **options):
    parser = add_data_arguments(argparse.ArgumentParser())
    argv = ["--dataroot", str(root), "--load_size", str(LOAD), "--crop_size", str(CROP)]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return parser.parse_args(argv)


@pytest.mark.parametrize("layout", ["aligned", "two"])
def test_a_gray_pack_gives_the_folders_items_pixel_for_pixel(colour_root, tmp_path, layout):
    out = tmp_path / "packed"
    mode = "aligned" if layout == "aligned" else "two_folders"
    pack_phase(colour_root / layout, out, "train", load_size=LOAD, pairs_per_shard=2,
               dataset_mode=mode, gray=True, progress=False)
    verify_pack(out / "train")
    for channels in ({"input_nc": 1}, {"output_nc": 1}, {"input_nc": 1, "output_nc": 1}, {}):
        for direction in ("AtoB", "BtoA"):
            options = dict(channels, direction=direction, dataset_mode=mode)
            folder = create_dataset(_data_args(colour_root / layout, **options), "train")
            packed = create_dataset(_data_args(out, **options), "train")
            assert isinstance(packed, PackedDataset) and len(packed) == len(folder) == 5
            for index in range(5):
                for seed in range(3):
                    want = folder.load(index, random.Random(seed))
                    got = packed.load(index, random.Random(seed))
                    for name, count in (("A", channels.get("input_nc", 3)),
                                        ("B", channels.get("output_nc", 3))):
                        assert got[name].shape == (count, CROP, CROP)
                        assert torch.equal(got[name], want[name]), (options, index, seed, name)
                    assert (got["A_paths"], got["B_paths"]) == (want["A_paths"], want["B_paths"])


def test_the_images_tell_gray_then_resize_from_resize_then_gray(colour_root):
    """Else the test above could not tell the reference's order from the old one."""
    gray = np.empty((LOAD, 2 * LOAD), np.uint8)
    colour = load_pair(colour_root / "aligned", "train/0.png", "train/0.png", True, LOAD,
                       gray_out=gray)
    assert not np.array_equal(np.asarray(Image.fromarray(colour).convert("L")), gray)


def test_a_pack_without_gray_refuses_gray_options_in_one_line(colour_root, tmp_path):
    out = tmp_path / "packed"
    pack_phase(colour_root / "aligned", out, "train", load_size=LOAD, progress=False)
    for option in ({"input_nc": 1}, {"output_nc": 1}):
        with pytest.raises(DataError) as caught:
            create_dataset(_data_args(out, **option), "train")
        message = str(caught.value)
        assert "\n" not in message and str(out / "train") in message
        assert f"--load_size {LOAD} --dataset_mode aligned" in message and "--gray`" in message


def test_gray_shards_are_checked_resumed_and_dropped_like_colour_ones(colour_root, tmp_path,
                                                                     capsys):
    out = tmp_path / "packed"
    assert main(["pack", str(colour_root / "aligned"), str(out), "--load_size", str(LOAD),
                 "--pairs-per-shard", "2", "--gray", "--no-progress"]) == 0
    good = {path.name: path.read_bytes() for path in (out / "train").glob("gray-*.u8")}
    assert sorted(good) == ["gray-00000.u8", "gray-00001.u8", "gray-00002.u8"]
    gray_shard = out / "train" / "gray-00001.u8"
    damaged = bytearray(gray_shard.read_bytes())
    damaged[3] ^= 1
    gray_shard.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="gray-00001.u8: checksum"):
        verify_pack(out / "train")
    packed = create_dataset(_data_args(out, input_nc=1), "train")
    with pytest.raises(DataError, match="gray-00001.u8: shard checksum .*--gray`"):
        for index in range(len(packed)):
            packed.load(index, random.Random(index))
    assert main(["pack", str(colour_root / "aligned"), str(out), "--load_size", str(LOAD),
                 "--pairs-per-shard", "2", "--gray", "--no-progress"]) == 0
    assert {path.name: path.read_bytes() for path in (out / "train").glob("gray-*.u8")} == good
    # packed again without --gray: the grayscale shards go with the option
    assert main(["pack", str(colour_root / "aligned"), str(out), "--load_size", str(LOAD),
                 "--pairs-per-shard", "2", "--no-progress"]) == 0
    assert not list((out / "train").glob("gray-*.u8"))
    assert read_index(out / "train")["gray"] is False
